"""The orders service's workers: the residents projection consumer and the order scheduler; the
relay comes from shared. Runs inside the API process by default (RUN_WORKERS_IN_API=true) or alone
with `eldercare worker orders` when scaled out."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from services.orders.domain.residents import RESIDENT_TYPES, SNAPSHOT_TYPES
from services.orders.handlers import fold_residents, run_due
from services.orders.settings import OrdersSettings, get_orders_settings
from shared.db import connect
from shared.events import EVENT_DATA_MODELS
from shared.messaging.consumer import EventConsumer
from shared.messaging.topics import RESIDENTS
from shared.service import ServiceRuntime

log = logging.getLogger(__name__)
CONSUMER = "orders-residents"
SCHEDULER_LOCK = "orders:scheduler"


def orders_settings(runtime: ServiceRuntime) -> OrdersSettings:
    return runtime.state.setdefault("orders_settings", get_orders_settings())  # type: ignore[return-value]


class OrderScheduler:
    """Runs the order timers (expiry, late, no-show). The due time is a column of the order, so a
    restart loses nothing: the leader (one per database, by advisory lock held on its own
    connection) scans the orders whose time has come, oldest first, and stores the next one."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.cfg = orders_settings(runtime)
        self.is_leader = False
        self.applied_total = 0

    async def run(self) -> None:
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a lost database: wait and try again
                log.exception("order scheduler failed; retrying")
            self.is_leader = False
            await asyncio.sleep(self.cfg.scheduler_interval_s)

    async def _lead(self) -> None:
        lock = await connect(self.runtime.db.url, self.runtime.db.schema)
        try:
            while not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", SCHEDULER_LOCK):
                await asyncio.sleep(self.cfg.scheduler_interval_s)
            self.is_leader = True
            while True:
                n = await self.tick()
                if n < self.cfg.scheduler_batch:
                    await asyncio.sleep(self.cfg.scheduler_interval_s)
                    await lock.fetchval("SELECT 1")  # the lock lives as long as this connection: check it
        finally:
            await lock.close()

    async def tick(self, now: datetime | None = None) -> int:
        async with self.runtime.db.transaction() as conn:
            n = await run_due(conn, self.cfg.timers, now or datetime.now(timezone.utc), self.cfg.scheduler_batch)
        self.applied_total += n
        return n


def build_consumers(runtime: ServiceRuntime) -> list[EventConsumer]:
    assert runtime.db.pool is not None
    scheduler = OrderScheduler(runtime)
    runtime.state["scheduler"] = scheduler
    runtime.background.append(("scheduler", scheduler.run))
    # Types the contracts know (a snapshot type added later by the registry is folded once it is).
    folded = frozenset(t for t in RESIDENT_TYPES if t in EVENT_DATA_MODELS)
    return [EventConsumer(
        name=CONSUMER,
        topics=[RESIDENTS.name],
        handlers={},
        batch_handler=fold_residents,
        batch_types=folded,
        # Whole versioned snapshots: applying one twice changes nothing (see domain/residents.py).
        inbox_exempt_types=SNAPSHOT_TYPES & folded,
        bisect_failures=True,
        fetch_max_wait_ms=100,
        pool=runtime.db.pool,
        bootstrap=runtime.settings.kafka_bootstrap_servers,
        batch_size=max(runtime.settings.consumer_batch_size, 2000),
        schema="orders",
    )]
