"""The orders service: create_app() builds its FastAPI app and lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from services.orders.worker import build_consumers
from shared.service import create_service_app
from shared.settings import PlatformSettings


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    return create_service_app(
        "orders",
        title="Orders service",
        description="The menu-style service catalog, service orders, visit verification, subsidies and settlement.",
        consumers=build_consumers,
        settings=settings,
    )
