"""The registry service: create_app() builds its FastAPI app and lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry.api.admin import router as admin_router
from services.registry.api.events import router as events_router
from services.registry.api.imports import router as imports_router
from services.registry.api.problems import PROBLEMS
from services.registry.api.residents import router as residents_router
from services.registry.api.stats import router as stats_router
from services.registry.republish import on_start
from services.registry.worker import PRUNE_TARGETS, build_consumers
from shared.service import create_service_app
from shared.settings import PlatformSettings


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    return create_service_app(
        "registry",
        title="Registry service",
        description="Elderly residents, ability assessments and the county ingest gateway.",
        routers=[residents_router, events_router, stats_router, imports_router, admin_router],
        # A 1,000,000-row spreadsheet is 100-200 MB of CSV.
        path_limits={"/v1/imports": 256 * 1024 * 1024},
        # The ingest gateway names a NUL in an event's field in that event's verdict.
        own_text_checks=("/v1/events",),
        consumers=build_consumers,
        prune_targets=PRUNE_TARGETS,
        settings=settings,
        on_start=on_start,
        problems=PROBLEMS,
    )
