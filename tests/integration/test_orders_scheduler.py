"""The order timers run by the service's scheduler: state in the orders table (a due-time column),
so a new scheduler (a restart, another replica) carries on where the last one stopped; one leader
at a time by advisory lock. And the schema: the SQLModel models and the migrations agree."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import token_for
from tests.integration.orders_fixtures import (
    new_caregiver, new_provider, new_resident, place, runtime_of,
)


async def tick_until_done(scheduler, now: datetime) -> None:
    while await scheduler.tick(now) >= scheduler.cfg.scheduler_batch:
        pass


async def order_row(orders, oid: str):
    async with runtime_of(orders).db.connection() as conn:
        return await conn.fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(oid))


async def outbox_types(orders, oid: str) -> list[str]:
    async with runtime_of(orders).db.connection() as conn:
        rows = await conn.fetch("SELECT payload FROM outbox WHERE key = $1 ORDER BY id", oid)
    import orjson
    return [orjson.loads(r["payload"])["type"].split(".")[2] for r in rows]


async def test_an_order_not_accepted_in_time_expires_and_gives_back_its_budget(orders, settings):
    from services.orders.worker import OrderScheduler

    rid = await new_resident(orders, settings)
    provider = await new_provider(orders, settings)
    county = token_for(settings, "county", "410928")
    oid = (await place(orders, county, rid, provider)).json()["id"]
    row = await order_row(orders, oid)
    assert row["government_fen"] > 0 and row["due_at"] is not None
    scheduler = OrderScheduler(runtime_of(orders))
    await tick_until_done(scheduler, row["due_at"] - timedelta(seconds=1))
    assert (await order_row(orders, oid))["state"] == "placed"
    await tick_until_done(scheduler, row["due_at"])
    row = await order_row(orders, oid)
    assert (row["state"], row["due_at"], row["end_reason"]) == ("expired", None, "not accepted in time")
    async with runtime_of(orders).db.connection() as conn:
        used = await conn.fetchval("SELECT sum(used_fen) FROM entitlement_usage WHERE resident_id = $1",
                                   uuid.UUID(rid))
        booked = await conn.fetchval("SELECT sum(booked) FROM provider_load WHERE provider_id = $1", provider)
    assert (used, booked) == (0, 0)
    assert (await outbox_types(orders, oid))[-1] == "expired"
    r = await orders.post(f"/v1/orders/{oid}/accept", headers=token_for(settings, "provider", provider_id=provider))
    assert r.status_code == 409 and r.json()["current_state"] == "expired"


async def test_no_check_in_is_late_at_15_30_60_then_a_no_show_across_a_restart(orders, settings):
    from services.orders.worker import OrderScheduler

    rid = await new_resident(orders, settings)
    provider = await new_provider(orders, settings)
    caregiver = await new_caregiver(orders, settings, provider)
    prov = token_for(settings, "provider", provider_id=provider)
    oid = (await place(orders, token_for(settings, "county", "410928"), rid, provider)).json()["id"]
    await orders.post(f"/v1/orders/{oid}/accept", headers=prov)
    await orders.post(f"/v1/orders/{oid}/assign", headers=prov, json={"caregiver_id": caregiver})
    start = (await order_row(orders, oid))["scheduled_start"]
    grace = 10
    first = OrderScheduler(runtime_of(orders))
    await tick_until_done(first, start + timedelta(minutes=grace + 16))
    row = await order_row(orders, oid)
    assert (row["state"], row["late_minutes"]) == ("assigned", 15)
    assert row["due_at"] == start + timedelta(minutes=grace + 30)
    # a restart: a new scheduler knows only what the table says
    second = OrderScheduler(runtime_of(orders))
    await tick_until_done(second, start + timedelta(minutes=grace + 61))
    assert (await order_row(orders, oid))["late_minutes"] == 60
    await tick_until_done(second, start + timedelta(minutes=90))
    row = await order_row(orders, oid)
    assert (row["state"], row["due_at"]) == ("no_show", None)
    assert (await outbox_types(orders, oid))[-2:] == ["late", "no_show"]
    assert (await outbox_types(orders, oid)).count("late") == 2  # 15, then 60 (30 passed while down)


async def test_only_one_scheduler_leads_at_a_time(orders, settings):
    from services.orders.worker import OrderScheduler

    running = runtime_of(orders).state["scheduler"]
    assert running.is_leader
    rival = OrderScheduler(runtime_of(orders))
    task = asyncio.create_task(rival.run())
    await asyncio.sleep(1.5)
    assert not rival.is_leader
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_orders_models_and_migrations_agree(orders, settings):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from services.orders.store import metadata
    from shared.db import sqlalchemy_url
    from shared.migrations import autogenerate_options

    # As in migrations/env.py: connected with the server's default search path, the orders schema by name.
    engine = create_async_engine(sqlalchemy_url(settings.database_url))
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts=autogenerate_options("orders")), metadata))
    finally:
        await engine.dispose()
    assert diff == []
