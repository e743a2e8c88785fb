"""Calling emergency contacts: due notifications are claimed with a lease, sent to the notification
gateway (ALERTS_NOTIFY_URL: an SMS/voice provider's HTTP endpoint, one JSON message per call,
signed in the Standard Webhooks manner when ALERTS_NOTIFY_SECRET is set) concurrently with a
timeout, and every attempt lands on the alert's timeline (handlers.notification_outcomes). Run by
the scheduler's leader, apart from detection: a slow gateway delays only its own calls."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import httpx
import orjson

from services.alerts import handlers
from services.alerts.domain import notify
from services.alerts.domain.webhooks import sign
from services.alerts.settings import AlertsSettings
from shared.db import Database
from shared.privacy import mask_personal

LEASE_S = 60
BATCH = 50


async def notify_due(db: Database, client: httpx.AsyncClient, settings: AlertsSettings) -> int:
    """One round: the attempts due now. Returns how many were sent."""
    now = datetime.now(timezone.utc)
    async with db.transaction() as conn:
        rows = await conn.fetch(
            "UPDATE notifications n SET next_attempt_at = $1 + make_interval(secs => $2) FROM alerts a "
            "LEFT JOIN residents r ON r.resident_id = a.resident_id "
            "WHERE n.id IN (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 "
            "ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) AND a.id = n.alert_id "
            "RETURNING n.id, n.alert_id, n.county_code, n.resident_id, n.position, n.name, n.phone, n.trigger, "
            "n.attempts, a.severity, a.silence_id, a.cause, r.name AS resident_name, r.village",
            now, LEASE_S, BATCH)
    if not rows:
        return 0
    errors = await asyncio.gather(*(_send(client, settings, r) for r in rows))
    async with db.transaction() as conn:
        await handlers.notification_outcomes(conn, list(zip(rows, errors)), settings.notify_max_attempts,
                                             settings.notify_first_retry_s)
    return sum(1 for e in errors if e is None)


async def _send(client: httpx.AsyncClient, settings: AlertsSettings, row) -> str | None:
    """None when the gateway took the message, else why not (never with the phone number in it)."""
    if not settings.notify_url:
        return "no notification gateway configured (ALERTS_NOTIFY_URL)"
    msg_id = f"notify-{row['id']}-{row['attempts'] + 1}"
    body = orjson.dumps({
        "id": msg_id, "to": row["phone"], "name": row["name"], "channel": "sms",
        "text": notify.message(row["resident_name"], row["village"], row["cause"]),
        "alert_id": str(row["alert_id"]), "county_code": row["county_code"]})
    timestamp = int(time.time())
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if settings.notify_secret:
        headers["webhook-signature"] = sign(settings.notify_secret, msg_id, timestamp, body)
    try:
        response = await client.post(settings.notify_url, content=body, headers=headers,
                                     timeout=settings.notify_timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {mask_personal(str(exc)) or 'gateway unreachable'}"[:300]
    if 200 <= response.status_code < 300:
        return None
    return f"gateway answered HTTP {response.status_code}"
