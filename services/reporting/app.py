"""The reporting service: create_app() builds its FastAPI app and lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from services.reporting.worker import build_consumers
from shared.service import create_service_app
from shared.settings import PlatformSettings


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    return create_service_app(
        "reporting",
        title="Reporting service",
        description="Aggregates and policy KPIs per county and city, live streams, exports and the dashboard.",
        consumers=build_consumers,
        settings=settings,
    )
