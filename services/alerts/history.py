"""Pruning the alert history (ALERTS_*_RETENTION_DAYS): resolved alerts older than the retention go
with their timeline steps and notification attempts; delivered and dead-lettered webhook deliveries
and ended orders sooner. Open and acknowledged alerts stay however old they are; the audit log is
never pruned (its trigger refuses it in any case). The service keeps no raw readings: a resident's
latest watermark, vital-sign and zone states are one row each, and the telemetry outbox is pruned
by the relay (OUTBOX_TELEMETRY_RETENTION_HOURS). Run by the scheduler's leader in small batches,
each its own short transaction."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

from services.alerts.domain.orders import ENDED_STATES
from services.alerts.settings import AlertsSettings
from shared.db import Database

log = logging.getLogger(__name__)
PAUSE_S = 0.05

ALERTS = (
    "WITH gone AS (DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE status = 'resolved' "
    "AND resolved_at < $1 ORDER BY resolved_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id), "
    "steps AS (DELETE FROM alert_steps WHERE alert_id IN (SELECT id FROM gone)), "
    "calls AS (DELETE FROM notifications WHERE alert_id IN (SELECT id FROM gone)) "
    "SELECT count(*) FROM gone")
DELIVERIES = (
    "WITH gone AS (DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status <> 'pending' "
    "AND created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM gone")
ORDERS = (
    "WITH gone AS (DELETE FROM orders WHERE order_id IN (SELECT order_id FROM orders WHERE scheduled_start < $1 "
    "AND state = ANY($3::text[]) LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM gone")


async def prune_history(db: Database, settings: AlertsSettings, now: datetime | None = None) -> dict[str, int]:
    """One round: rows deleted per kind."""
    now = now or datetime.now(timezone.utc)
    batch = settings.history_prune_batch
    plan = [("alerts", ALERTS, now - timedelta(days=settings.history_retention_days), ()),
            ("deliveries", DELIVERIES, now - timedelta(days=settings.delivery_retention_days), ()),
            ("orders", ORDERS, now - timedelta(days=settings.order_retention_days), (sorted(ENDED_STATES),))]
    deleted: dict[str, int] = {}
    for name, sql, cutoff, extra in plan:
        total = 0
        while True:
            async with db.transaction() as conn:
                n = await conn.fetchval(sql, cutoff, batch, *extra)
            total += n
            if n < batch:
                break
            await asyncio.sleep(PAUSE_S)
        deleted[name] = total
    if any(deleted.values()):
        log.info("pruned alert history", extra={"fields": {"deleted": deleted,
                                                             "retention_days": settings.history_retention_days}})
    return deleted
