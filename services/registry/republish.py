"""The registry's re-publish job: every resident as its current versioned snapshot
(`eldercare.resident.snapshot.v1` on the residents topic) and the county reports it keeps (each
facility's latest report and every training record, sent again as they were first forwarded, same
event id, on the ingest topic). The mechanism is shared/messaging/snapshots.py."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone

import asyncpg

from services.registry.importer import recover_interrupted_imports
from services.registry.store import RESIDENT_COLUMNS, SCHEMA
from shared.events.residents import ResidentRepublished, ResidentSnapshot
from shared.messaging.outbox import fast_event_json, fields_of
from shared.messaging.snapshots import Chunk, SnapshotJobs, SnapshotSource
from shared.messaging.topics import INGEST, RESIDENTS
from shared.observability import current_traceparent

SNAPSHOT_TYPE = "eldercare.resident.snapshot.v1"
SOURCE = "registry/republish"
STATE_KEY = "snapshot_jobs"


def snapshot_event_id(job_id: uuid.UUID, resident_id: str, version: int) -> str:
    """uuid5(job id, "resident:version"): one id per (job, resident, version), so a consumer keeping an
    inbox sees a chunk retried after a crash as the same events (a chunk commits whole, so this is
    belt and braces). Written out as forwarded_id is (RFC 4122 §4.3), at a third of uuid.uuid5's cost."""
    digest = bytearray(hashlib.sha1(job_id.bytes + f"{resident_id}:{version}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_RESIDENT = fields_of(ResidentSnapshot)
_DATA = fields_of(ResidentRepublished)


def snapshot_payload(row, job_id: str, event_id: str, time: str, traceparent: str | None) -> bytes:
    """The snapshot event as JSON, built straight from the row without the models (a chunk's main
    cost otherwise; 700,000 residents in one job): what `make_event(SNAPSHOT_TYPE, …).to_json()` gives."""
    rid = str(row["id"])
    resident = _RESIDENT(
        resident_id=rid, county_code=row["county_code"], name=row["name"], birth_date=row["birth_date"],
        gender=row["gender"], township=row["township"], village=row["village"],
        living_arrangement=row["living_arrangement"], categories=row["categories"],
        ability_level=row["ability_level"], status=row["status"], family_bed=row["family_bed"],
        version=row["version"], home_lat=row["home_lat"], home_lon=row["home_lon"],
        family_doctor_contract=row["family_doctor_contract"], family_doctor_signed_on=row["family_doctor_signed_on"])
    return fast_event_json(id=event_id, source=SOURCE, type=SNAPSHOT_TYPE, subject=rid, time=time,
                           data=_DATA(resident=resident, job_id=job_id), countycode=row["county_code"],
                           traceparent=traceparent)


async def resident_chunk(conn: asyncpg.Connection, job_id: uuid.UUID, after: str | None, limit: int) -> Chunk:
    # FOR SHARE: a change in flight to one of these rows commits (and writes its event) first; a new
    # one waits for this chunk. Per resident, outbox order is then version order (snapshots.py).
    if after is None:
        rows = await conn.fetch(f"SELECT {RESIDENT_COLUMNS} FROM residents ORDER BY id LIMIT $1 FOR SHARE", limit)
    else:
        rows = await conn.fetch(f"SELECT {RESIDENT_COLUMNS} FROM residents WHERE id > $1::uuid ORDER BY id "
                                "LIMIT $2 FOR SHARE", after, limit)
    job, now, traceparent = str(job_id), datetime.now(timezone.utc).isoformat(), current_traceparent()
    out = []
    for row in rows:
        rid = str(row["id"])
        event_id = snapshot_event_id(job_id, rid, row["version"])
        out.append((event_id, RESIDENTS.name, rid, snapshot_payload(row, job, event_id, now, traceparent), None))
    return out, str(rows[-1]["id"]) if rows else None


async def count_residents(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM residents")


async def county_report_chunk(conn: asyncpg.Connection, job_id: uuid.UUID, after: str | None, limit: int) -> Chunk:
    rows = await conn.fetch(
        "SELECT event_id, key, payload FROM county_reports WHERE $1::text IS NULL OR event_id > $1 "
        "ORDER BY event_id LIMIT $2 FOR SHARE", after, limit)
    # The forwarded envelope as it was: same id (consumers' inboxes and the facility's report time
    # keep a second delivery from counting twice), same key, so it lands on the same partition.
    out = [(r["event_id"], INGEST.name, r["key"], bytes(r["payload"]), None) for r in rows]
    return out, rows[-1]["event_id"] if rows else None


async def count_county_reports(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM county_reports")


SOURCES = (
    SnapshotSource("residents", resident_chunk, count_residents),
    SnapshotSource("county_reports", county_report_chunk, count_county_reports),
)


def jobs_of(runtime) -> SnapshotJobs:
    jobs = runtime.state.get(STATE_KEY)
    if jobs is None:
        jobs = runtime.state[STATE_KEY] = SnapshotJobs(runtime.db.pool, SCHEMA, SOURCES)
    return jobs  # type: ignore[return-value]


def run_in_service(runtime, job_id: uuid.UUID, *, max_chunks: int | None = None):
    """A job as a task of this process; the runtime cancels it on shutdown (it resumes at start-up)."""
    task = jobs_of(runtime).start(job_id, max_chunks=max_chunks)
    if task not in runtime.tasks:
        runtime.tasks.append(task)
        task.add_done_callback(lambda t: runtime.tasks.remove(t) if t in runtime.tasks else None)
    return task


async def on_start(runtime) -> None:
    """The registry's start-up chores: interrupted imports are marked, interrupted re-publish jobs
    carry on from their persisted position."""
    await recover_interrupted_imports(runtime)
    jobs = jobs_of(runtime)
    for job_id in await jobs.resume_interrupted():
        task = jobs.tasks.get(job_id)
        if task is not None and task not in runtime.tasks:
            runtime.tasks.append(task)
