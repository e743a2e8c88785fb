"""The leader-run scheduler: one process per schema holds a PostgreSQL advisory lock (as the relay
does) and fires the persisted timers (escalation, caregivers late, no activity, overdue visits) and the webhook
deliveries, the emergency-contact calls and the history pruning. The timers live in the tables, so a new leader after a crash carries on where the old
one stopped; each fires in the statement that clears it, so none fires twice."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from services.alerts import handlers
from services.alerts.history import prune_history
from services.alerts.notifications import notify_due
from services.alerts.settings import AlertsSettings, get_alerts_settings
from services.alerts.webhooks import deliver_due
from shared.db import Database, connect

log = logging.getLogger(__name__)
LOCK = "alerts:scheduler"


class Scheduler:
    def __init__(self, db: Database, *, escalation_every_s: float = 0.5, care_every_s: float = 15.0,
                 deliveries_every_s: float = 0.5, delivery_timeout_s: float = 5.0,
                 settings: AlertsSettings | None = None) -> None:
        self.db = db
        self.settings = settings or get_alerts_settings()
        self.escalation_every_s = escalation_every_s
        self.care_every_s = care_every_s
        self.deliveries_every_s = deliveries_every_s
        self.delivery_timeout_s = delivery_timeout_s
        self.is_leader = False
        self.escalated_total = 0
        self.delivered_total = 0
        self.notified_total = 0
        self.pruned: dict[str, int] = {}

    async def run(self) -> None:
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a lost database must not end the scheduler
                log.exception("alerts scheduler failed; retrying")
            self.is_leader = False
            await asyncio.sleep(1.0)

    async def _lead(self) -> None:
        lock_conn = await connect(self.db.url, self.db.schema)
        try:
            while not await lock_conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", LOCK):
                await asyncio.sleep(1.0)
            self.is_leader = True
            async with httpx.AsyncClient(timeout=self.delivery_timeout_s) as client:
                await asyncio.gather(self._timers(), self._deliveries(client), self._notifications(client),
                                     self._history())
        finally:
            await lock_conn.close()

    async def _timers(self) -> None:
        next_care = 0.0
        while True:
            async with self.db.transaction() as conn:
                self.escalated_total += await handlers.escalate_due(conn)
            async with self.db.transaction() as conn:
                await handlers.orders_late_due(conn)
            if time.monotonic() >= next_care:
                async with self.db.transaction() as conn:
                    await handlers.no_activity_due(conn)
                async with self.db.transaction() as conn:
                    await handlers.visits_due(conn)
                next_care = time.monotonic() + self.care_every_s
            await asyncio.sleep(self.escalation_every_s)

    async def _deliveries(self, client: httpx.AsyncClient) -> None:
        # Deliveries run apart from detection: a slow receiver holds up only its own attempts.
        while True:
            self.delivered_total += await deliver_due(self.db, client)
            await asyncio.sleep(self.deliveries_every_s)

    async def _notifications(self, client: httpx.AsyncClient) -> None:
        while True:
            self.notified_total += await notify_due(self.db, client, self.settings)
            await asyncio.sleep(self.deliveries_every_s)

    async def _history(self) -> None:
        while True:
            for name, n in (await prune_history(self.db, self.settings)).items():
                self.pruned[name] = self.pruned.get(name, 0) + n
            await asyncio.sleep(self.settings.history_prune_interval_s)
