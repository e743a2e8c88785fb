"""Pruning the de-duplication tables: inbox rows, idempotency keys and (registry) ingest event
claims older than DEDUP_RETENTION_DAYS are deleted, so the tables stop growing with traffic.

The retention is longer than the outbox's (settings refuse anything else): a replay re-sends at
most OUTBOX_RETENTION_DAYS of events, and each must still find its inbox row. One process per
schema prunes (advisory lock), in small batches of short autocommitted DELETEs, so it never holds
many row locks or a long transaction. The audit log is never pruned: it is not a target here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.db import CONNECTION_ERRORS, connect, quote_ident

log = logging.getLogger(__name__)
# Pause between two batches of one round: other writers get the table (and the WAL) in between.
BATCH_PAUSE_S = 0.05


@dataclass(frozen=True, slots=True)
class PruneTarget:
    """A table whose rows may go once `column` (a timestamptz, indexed) is older than the retention."""

    table: str
    column: str

    def statement(self) -> str:
        table, column = quote_ident(self.table), quote_ident(self.column)
        # ctid = ANY(ARRAY(...)): a TID scan of at most $2 rows found through the column's index;
        # DELETE has no LIMIT of its own.
        return (f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {table} WHERE {column} < now() - make_interval(secs => $1) LIMIT $2))")


# Every service keeps an inbox; idempotency keys where the service has the table.
SHARED_TARGETS: tuple[PruneTarget, ...] = (
    PruneTarget("inbox", "processed_at"),
    PruneTarget("idempotency_keys", "created_at"),
)


class Pruner:
    """Deletes expired de-duplication rows of one schema every `interval_s`, leader only."""

    def __init__(self, *, service: str, database_url: str, schema: str, targets: Sequence[PruneTarget],
                 retention_days: float, batch_size: int = 5000, interval_s: float = 300.0) -> None:
        self.service = service
        self.database_url = database_url
        self.schema = schema
        self.targets = tuple(targets)
        self.retention_seconds = retention_days * 86400
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.pruned_total = 0
        self.rounds = 0

    async def run(self) -> None:
        """A round now and then every interval until cancelled; database outages are waited out."""
        while True:
            try:
                await self.prune_round()
            except asyncio.CancelledError:
                raise
            except (*CONNECTION_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("pruning skipped (%s: %s); next round in %.0fs", type(exc).__name__, exc,
                            self.interval_s)
            except Exception:
                log.exception("pruning failed; next round in %.0fs", self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def prune_round(self) -> dict[str, int] | None:
        """One round if this process gets the schema's pruning lock (rows deleted per table), else None."""
        conn = await connect(self.database_url, self.schema, timeout=10, command_timeout=60,
                             server_settings={"application_name": f"{self.service}-pruner"})
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"prune:{self.schema}"):
                return None  # another replica prunes this schema
            deleted = await self.prune(conn)
        finally:
            await conn.close()  # also releases the lock
        self.rounds += 1
        return deleted

    async def prune(self, conn: asyncpg.Connection) -> dict[str, int]:
        """Delete expired rows of every target that exists in the schema, batch by batch."""
        deleted: dict[str, int] = {}
        started = time.monotonic()
        for target in self.targets:
            if await conn.fetchval("SELECT to_regclass($1)", f"{self.schema}.{target.table}") is None:
                continue
            statement, total = target.statement(), 0
            while True:
                status = await conn.execute(statement, float(self.retention_seconds), self.batch_size)
                n = int(status.split()[-1])
                total += n
                if n < self.batch_size:
                    break
                await asyncio.sleep(BATCH_PAUSE_S)
            deleted[target.table] = total
        self.pruned_total += sum(deleted.values())
        if any(deleted.values()):
            log.info("pruned expired de-duplication rows", extra={"fields": {
                "schema": self.schema, "deleted": deleted, "retention_days": self.retention_seconds / 86400,
                "seconds": round(time.monotonic() - started, 2)}})
        return deleted
