"""Re-publishing a service's current state as versioned snapshots: an incremental snapshot job
(in the manner of Debezium's incremental snapshots and Netflix's DBLog), so a projection can be
rebuilt from its sources whatever the broker kept.

A job walks each of its sources in primary-key order, one small chunk per transaction. A chunk
reads its rows `FOR SHARE` (it waits for writes in flight to those rows and holds off new ones
until it commits), writes one event per row to the outbox and moves the job's persisted position,
all in that one transaction. So:

- live traffic interleaves: the chunk's transaction is short and the relay publishes in outbox-id
  order, so a live event waits behind at most the chunks already written (the job also waits while
  the outbox holds more than `max_pending` unpublished rows);
- for one row, the outbox order is the row's version order (a change either committed before the
  chunk read the row, and its event has a lower outbox id, or it waits for the chunk to commit, and
  its event has a higher one): this replaces DBLog's low/high watermarks, and a consumer applying
  snapshots by version is never moved backwards;
- a crash or restart loses at most the chunk in flight, which rolls back with its position: the job
  resumes after the last committed chunk and emits no row twice.

A service plugs in a `SnapshotSource` per table (registry: residents, county reports); orders and
alerts add theirs when they have state. The job table is `SNAPSHOT_DDL`, created by the service's
own migration."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.messaging.outbox import add_rows

log = logging.getLogger(__name__)

SNAPSHOT_DDL = """
CREATE TABLE IF NOT EXISTS snapshot_jobs (
    id           uuid PRIMARY KEY,
    sources      text[]      NOT NULL,
    stage        integer     NOT NULL DEFAULT 0,
    position     text,
    status       text        NOT NULL DEFAULT 'running',
    total        bigint      NOT NULL DEFAULT 0,
    emitted      bigint      NOT NULL DEFAULT 0,
    chunks       integer     NOT NULL DEFAULT 0,
    chunk_size   integer     NOT NULL,
    requested_by text        NOT NULL,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX IF NOT EXISTS snapshot_jobs_running ON snapshot_jobs (created_at) WHERE status = 'running'
"""

# A chunk: (outbox rows, the key of its last row as text). None for the key: the source is done.
Chunk = tuple[list[tuple], str | None]


@dataclass(frozen=True, slots=True)
class SnapshotSource:
    """One table a job walks. `chunk(conn, job_id, after, limit)` reads up to `limit` rows whose key
    is greater than `after` (None: from the first) in key order, locked FOR SHARE, and returns their
    outbox rows and the last key; `count(conn)` is the size shown as the job's total."""

    name: str
    chunk: Callable[[asyncpg.Connection, uuid.UUID, str | None, int], Awaitable[Chunk]]
    count: Callable[[asyncpg.Connection], Awaitable[int]]


@dataclass(slots=True)
class Step:
    """Where a job goes after a chunk (pure; see `next_step`)."""

    stage: int
    position: str | None
    done: bool


def next_step(stage: int, n_sources: int, returned: int, limit: int, last_key: str | None) -> Step:
    """A short chunk (fewer rows than asked for) ends its source: the next source starts from its
    first key; after the last source the job is done. Otherwise carry on after the last key."""
    if returned < limit or last_key is None:
        if stage + 1 >= n_sources:
            return Step(stage + 1, None, True)
        return Step(stage + 1, None, False)
    return Step(stage, last_key, False)


def job_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A job as the admin API shows it."""
    total, emitted = row["total"], row["emitted"]
    sources = list(row["sources"])
    stage = row["stage"]
    return {
        "id": str(row["id"]),
        "status": row["status"],
        "sources": sources,
        "source": sources[stage] if stage < len(sources) else None,
        "position": row["position"],
        "emitted": emitted,
        "total": total,
        "progress": round(min(emitted / total, 1.0), 4) if total else (1.0 if row["status"] == "succeeded" else 0.0),
        "chunks": row["chunks"],
        "chunk_size": row["chunk_size"],
        "requested_by": row["requested_by"],
        "error": row["error"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


class SnapshotJobs:
    """Starts, runs and resumes a schema's snapshot jobs. One runner per job at a time, across
    processes and replicas: a session advisory lock on the job id, held while it runs (a killed
    process releases it with its connection)."""

    def __init__(self, pool: asyncpg.Pool, schema: str, sources: Sequence[SnapshotSource], *,
                 chunk_size: int = 1000, pause_s: float = 0.0, max_pending: int = 20_000) -> None:
        self.pool = pool
        self.schema = schema
        self.sources = {s.name: s for s in sources}
        self.chunk_size = chunk_size
        self.pause_s = pause_s
        self.max_pending = max_pending
        self.tasks: dict[uuid.UUID, asyncio.Task] = {}

    def _lock_key(self, job_id: uuid.UUID) -> str:
        return f"snapshot:{self.schema}:{job_id}"

    async def create(self, conn: asyncpg.Connection, requested_by: str, sources: Sequence[str] | None = None,
                     chunk_size: int | None = None) -> asyncpg.Record:
        names = list(sources or self.sources)
        unknown = [n for n in names if n not in self.sources]
        if unknown:
            raise KeyError(unknown[0])
        total = 0
        for name in names:
            total += await self.sources[name].count(conn)
        return await conn.fetchrow(
            "INSERT INTO snapshot_jobs (id, sources, total, chunk_size, requested_by) VALUES ($1, $2, $3, $4, $5) "
            "RETURNING *", uuid.uuid4(), names, total, chunk_size or self.chunk_size, requested_by)

    async def get(self, conn: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record | None:
        return await conn.fetchrow("SELECT * FROM snapshot_jobs WHERE id = $1", job_id)

    async def unpublished(self, conn: asyncpg.Connection) -> int:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")

    def start(self, job_id: uuid.UUID, *, max_chunks: int | None = None) -> asyncio.Task:
        """Run a job as a task of this process (a no-op if it already runs here)."""
        task = self.tasks.get(job_id)
        if task is not None and not task.done():
            return task
        task = asyncio.create_task(self.run(job_id, max_chunks=max_chunks), name=f"{self.schema}-snapshot-{job_id}")
        self.tasks[job_id] = task
        task.add_done_callback(lambda t: self.tasks.pop(job_id, None) if self.tasks.get(job_id) is t else None)
        return task

    async def run(self, job_id: uuid.UUID, *, max_chunks: int | None = None) -> str:
        """Run a job from its persisted position until it is done (or `max_chunks` chunks, for
        tests and operators stopping it midway). Returns the job's status, or 'busy' when another
        runner holds it."""
        key = self._lock_key(job_id)
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key):
                return "busy"
            try:
                return await self._run_locked(conn, job_id, max_chunks)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded on the job, which can be resumed
                log.exception("snapshot job failed", extra={"fields": {"job_id": str(job_id)}})
                await conn.execute("UPDATE snapshot_jobs SET status = 'failed', error = $2, updated_at = now() "
                                   "WHERE id = $1", job_id, f"{type(exc).__name__}: {exc}"[:2000])
                return "failed"
            finally:
                await asyncio.shield(conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key))

    async def _run_locked(self, conn: asyncpg.Connection, job_id: uuid.UUID, max_chunks: int | None) -> str:
        job = await self.get(conn, job_id)
        if job is None:
            raise KeyError(str(job_id))
        if job["status"] == "succeeded":
            return "succeeded"
        if job["status"] != "running":
            await conn.execute("UPDATE snapshot_jobs SET status = 'running', error = NULL, updated_at = now() "
                               "WHERE id = $1", job_id)
        log.info("snapshot job running", extra={"fields": {
            "job_id": str(job_id), "sources": list(job["sources"]), "stage": job["stage"],
            "position": job["position"], "emitted": job["emitted"], "total": job["total"]}})
        chunks = 0
        while max_chunks is None or chunks < max_chunks:
            await self._wait_for_relay(conn)
            done = await self._one_chunk(conn, job_id)
            chunks += 1
            if done:
                log.info("snapshot job finished", extra={"fields": {"job_id": str(job_id)}})
                return "succeeded"
            if self.pause_s:
                await asyncio.sleep(self.pause_s)
        return "running"

    async def _wait_for_relay(self, conn: asyncpg.Connection) -> None:
        """Back-pressure: a snapshot never piles up more unpublished rows than `max_pending`, so live
        events queue behind a bounded backlog."""
        while await self.unpublished(conn) > self.max_pending:
            await asyncio.sleep(0.2)

    async def _one_chunk(self, conn: asyncpg.Connection, job_id: uuid.UUID) -> bool:
        """One chunk in one transaction: its rows, their outbox rows, the job's new position."""
        async with conn.transaction():
            job = await conn.fetchrow("SELECT * FROM snapshot_jobs WHERE id = $1 FOR UPDATE", job_id)
            names = list(job["sources"])
            stage, limit = job["stage"], job["chunk_size"]
            if stage >= len(names):
                step, rows = Step(stage, None, True), []
            else:
                rows, last_key = await self.sources[names[stage]].chunk(conn, job_id, job["position"], limit)
                step = next_step(stage, len(names), len(rows), limit, last_key)
            await add_rows(conn, rows, self.schema)
            await conn.execute(
                "UPDATE snapshot_jobs SET stage = $2, position = $3, emitted = emitted + $4, chunks = chunks + 1, "
                "updated_at = now(), status = CASE WHEN $5 THEN 'succeeded' ELSE status END, "
                "finished_at = CASE WHEN $5 THEN now() END WHERE id = $1",
                job_id, step.stage, step.position, len(rows), step.done)
        return step.done

    async def resume_interrupted(self) -> list[uuid.UUID]:
        """Start every job left running by a process that stopped (call at start-up). A job whose
        lock is held runs in a live process and is left to it (run() answers 'busy')."""
        async with self.pool.acquire() as conn:
            ids = [r["id"] for r in await conn.fetch(
                "SELECT id FROM snapshot_jobs WHERE status = 'running' ORDER BY created_at")]
        for job_id in ids:
            self.start(job_id)
        if ids:
            log.warning("resuming interrupted snapshot jobs", extra={"fields": {"jobs": [str(i) for i in ids]}})
        return ids
