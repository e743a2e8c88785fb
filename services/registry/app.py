"""The registry service: create_app() builds its FastAPI app and lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry.api.events import router as events_router
from services.registry.api.residents import router as residents_router
from services.registry.api.stats import router as stats_router
from services.registry.worker import build_consumers
from shared.service import create_service_app
from shared.settings import PlatformSettings


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    return create_service_app(
        "registry",
        title="Registry service",
        description="Elderly residents, ability assessments and the county ingest gateway.",
        routers=[residents_router, events_router, stats_router],
        consumers=build_consumers,
        settings=settings,
    )
