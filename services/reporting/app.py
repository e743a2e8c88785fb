"""The reporting service: create_app() builds its FastAPI app and lifespan."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.reporting.api.admin import router as admin_router
from services.reporting.api.aggregates import router as aggregates_router
from services.reporting.api.dashboard import router as dashboard_router
from services.reporting.publisher import AggregatesFollower
from services.reporting.worker import broadcaster_of, build_consumers
from shared.service import ServiceRuntime, create_service_app
from shared.settings import PlatformSettings


async def _restore_stream_position(runtime: ServiceRuntime) -> None:
    """The stream position from the database, then the aggregates topic followed from here on
    (whether or not this process folds: every API process streams the topic's frames)."""
    async with runtime.db.transaction() as conn:
        seq = await conn.fetchval("SELECT seq FROM stream_state WHERE id = 1")
    broadcaster = broadcaster_of(runtime)
    broadcaster.reset(seq)
    follower = AggregatesFollower(runtime, broadcaster)
    runtime.state["follower"] = follower
    # Among the runtime's tasks, so it is cancelled with them when the process stops.
    runtime.tasks.append(asyncio.create_task(follower.run(), name="reporting-aggregates-follower"))


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    return create_service_app(
        "reporting",
        title="Reporting service",
        description="Aggregates and policy KPIs per county and city, live streams, exports and the dashboard.",
        routers=[aggregates_router, admin_router, dashboard_router],
        consumers=build_consumers,
        settings=settings,
        on_start=_restore_stream_position,
    )
