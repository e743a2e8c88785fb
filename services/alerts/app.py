"""The alerts service: create_app() builds its FastAPI app and lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from services.alerts.worker import build_consumers
from shared.service import create_service_app
from shared.settings import PlatformSettings


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    return create_service_app(
        "alerts",
        title="Alerts service",
        description="Anomaly detection, the alert lifecycle, escalation and notification.",
        consumers=build_consumers,
        settings=settings,
    )
