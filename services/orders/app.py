"""The orders service: create_app() builds its FastAPI app and lifespan."""

from __future__ import annotations

from fastapi import FastAPI

from services.orders.api.catalog import router as catalog_router
from services.orders.api.orders import router as orders_router
from services.orders.api.parties import router as parties_router
from services.orders.api.policies import router as policies_router
from services.orders.api.settlements import router as settlements_router
from services.orders.handlers import seed_reference
from services.orders.settings import OrdersSettings
from services.orders.worker import build_consumers
from shared.service import ServiceRuntime, create_service_app
from shared.settings import PlatformSettings


def create_app(settings: PlatformSettings | None = None, orders_settings: OrdersSettings | None = None) -> FastAPI:
    async def on_start(runtime: ServiceRuntime) -> None:
        if orders_settings is not None:
            runtime.state["orders_settings"] = orders_settings
        async with runtime.db.transaction() as conn:
            await seed_reference(conn)

    def consumers(runtime: ServiceRuntime):
        if orders_settings is not None:
            runtime.state["orders_settings"] = orders_settings
        return build_consumers(runtime)

    return create_service_app(
        "orders",
        title="Orders service",
        description="The menu-style service catalog, service orders, visit verification, subsidies and settlement.",
        routers=[catalog_router, parties_router, policies_router, orders_router, settlements_router],
        consumers=consumers,
        settings=settings,
        on_start=on_start,
    )
