"""The live alert stream: one LISTEN connection per API process is woken when steps commit, reads
the new steps (in sequence order: they are written under one lock) and fans them out. A client
resuming with Last-Event-ID reads what it missed from the timeline table itself, so resuming works
across restarts and from any replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import asyncpg

from services.alerts.store import ALERT_COLUMNS, CONTACT_JOIN, STREAM_CHANNEL
from shared.db import Database, connect

log = logging.getLogger(__name__)
PAGE = 1000

STEPS_SINCE = f"""
SELECT s.seq, s.kind, s.at AS step_at, s.actor, s.data AS step_data, {ALERT_COLUMNS}
FROM alert_steps s JOIN alerts a ON a.id = s.alert_id LEFT JOIN residents r ON r.resident_id = a.resident_id
{CONTACT_JOIN}
WHERE s.seq > $1 AND ($2::text IS NULL OR s.county_code = $2) ORDER BY s.seq LIMIT $3
"""


async def steps_since(conn: asyncpg.Connection, seq: int, county: str | None, limit: int = PAGE) -> list:
    return await conn.fetch(STEPS_SINCE, seq, county, limit)


@dataclass(eq=False)
class Subscriber:
    county: str | None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=10_000))
    overflowed: bool = False


class StepNotifier:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.subscribers: set[Subscriber] = set()
        self.last_seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        async with self.db.connection() as conn:
            self.last_seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM alert_steps")
        self._task = asyncio.create_task(self._run(), name="alerts-stream")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, county: str | None) -> Subscriber:
        sub = Subscriber(county)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def _run(self) -> None:
        while True:
            try:
                listener = await connect(self.db.url, self.db.schema)
                try:
                    await listener.add_listener(STREAM_CHANNEL, lambda *_: self._wake.set())
                    while True:
                        await self._drain()
                        # Polls too, in case a notification was lost with a connection.
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), 2.0)
                        self._wake.clear()
                finally:
                    with contextlib.suppress(Exception):
                        await listener.close()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the stream reconnects after a database outage
                log.warning("alerts stream lost the database; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)

    async def _drain(self) -> None:
        while True:
            async with self.db.connection() as conn:
                rows = await steps_since(conn, self.last_seq, None)
            if not rows:
                return
            for row in rows:
                for sub in list(self.subscribers):
                    if sub.county is not None and sub.county != row["county_code"]:
                        continue
                    if sub.queue.full():
                        sub.overflowed = True
                        continue
                    sub.queue.put_nowait(row)
            self.last_seq = rows[-1]["seq"]
            if len(rows) < PAGE:
                return
