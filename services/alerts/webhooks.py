"""Webhook deliveries (Standard Webhooks): the due ones are claimed with a lease, sent concurrently
with a timeout, and recorded: delivered, retried with exponential backoff, or dead-lettered after
the last attempt (all visible under /v1/subscriptions/{id}/deliveries)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import httpx

from services.alerts.domain.webhooks import retry_delay, sign
from shared.db import Database

LEASE_S = 60
BATCH = 50


async def deliver_due(db: Database, client: httpx.AsyncClient) -> int:
    now = datetime.now(timezone.utc)
    async with db.transaction() as conn:
        rows = await conn.fetch(
            "UPDATE deliveries d SET next_attempt_at = $1 + make_interval(secs => $2) FROM subscriptions s "
            "WHERE d.id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 "
            "ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) AND s.id = d.subscription_id "
            "RETURNING d.id, d.msg_id, d.payload, d.attempts, s.url, s.secret", now, LEASE_S, BATCH)
    if not rows:
        return 0
    results = await asyncio.gather(*(_send(client, r) for r in rows))
    delivered = 0
    async with db.transaction() as conn:
        for r, (status, error) in zip(rows, results):
            attempts = r["attempts"] + 1
            if error is None:
                delivered += 1
                await conn.execute("UPDATE deliveries SET status = 'delivered', attempts = $2, last_status = $3, "
                                   "last_error = NULL, delivered_at = now() WHERE id = $1", r["id"], attempts, status)
                continue
            delay = retry_delay(attempts)
            if delay is None:
                await conn.execute("UPDATE deliveries SET status = 'dead', attempts = $2, last_status = $3, "
                                   "last_error = $4 WHERE id = $1", r["id"], attempts, status, error)
            else:
                await conn.execute("UPDATE deliveries SET attempts = $2, last_status = $3, last_error = $4, "
                                   "next_attempt_at = $5 WHERE id = $1", r["id"], attempts, status, error,
                                   datetime.now(timezone.utc) + timedelta(seconds=delay))
    return delivered


async def _send(client: httpx.AsyncClient, row) -> tuple[int | None, str | None]:
    body = bytes(row["payload"])
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": row["msg_id"],
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(row["secret"], row["msg_id"], timestamp, body),
    }
    try:
        response = await client.post(row["url"], content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"
