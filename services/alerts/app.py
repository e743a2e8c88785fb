"""The alerts service: create_app() builds its FastAPI app and lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from services.alerts.api.alerts import router as alerts_router
from services.alerts.api.config import router as config_router
from services.alerts.api.console import router as console_router
from services.alerts.api.problems import PROBLEMS
from services.alerts.api.residents import router as residents_router
from services.alerts.api.stream import router as stream_router
from services.alerts.stream import StepNotifier
from services.alerts.worker import build_consumers
from shared.service import ServiceRuntime, create_service_app
from shared.settings import PlatformSettings


async def _start_stream(runtime: ServiceRuntime) -> None:
    notifier = StepNotifier(runtime.db)
    await notifier.start()
    runtime.state["notifier"] = notifier
    # Cancelled with the workers when the app stops.
    runtime.tasks.append(notifier._task)  # type: ignore[arg-type]


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    return create_service_app(
        "alerts",
        title="Alerts service",
        description="Anomaly detection, the alert lifecycle, escalation and notification.",
        # The stream's route before /alerts/{alert_id}, which would take "stream" for an id.
        routers=[stream_router, alerts_router, residents_router, config_router, console_router],
        consumers=build_consumers,
        settings=settings,
        on_start=_start_stream,
        problems=PROBLEMS,
    )
