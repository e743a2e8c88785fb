"""The registry's tables (SQLModel, documenting what migrations/ creates) and its queries."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg
from sqlalchemy import Column, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from shared.buckets import counts_sql

SCHEMA = "registry"
STATS_SQL = counts_sql("residents")
RECENT_SQL = ("SELECT id, county_code, version, status, birth_date, gender, living_arrangement, ability_level, "
              "categories, family_bed, township, family_doctor_contract FROM residents WHERE updated_at >= now() - make_interval(secs => $1)")


class Resident(SQLModel, table=True):
    __tablename__ = "residents"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    id_number: str = Field(unique=True)
    name: str
    phone: str | None = None
    county_code: str
    township: str
    village: str
    address: str | None = None
    living_arrangement: str
    categories: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String)))
    ability_level: int | None = None
    emergency_contact: str | None = None
    emergency_phone: str | None = None
    birth_date: date
    gender: str
    status: str = "active"
    family_bed: bool = False
    family_doctor_contract: bool = False
    family_doctor_signed_on: date | None = None
    date_of_death: date | None = None
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    home_lat: float | None = None  # WGS-84, both or neither (migration 0009b)
    home_lon: float | None = None


class ImportJob(SQLModel, table=True):
    __tablename__ = "import_jobs"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    county_code: str | None = None
    actor: str
    filename: str | None = None
    file_sha256: str
    status: str = "queued"
    total_rows: int = 0
    processed: int = 0
    accepted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(primary_key=True)
    at: datetime
    actor: str
    role: str
    county_code: str | None = None
    action: str
    resident_id: uuid.UUID | None = None
    fields: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String)))
    reason: str
    trace_id: str | None = None
    id_number_hash: str | None = None


RESIDENT_COLUMNS = (
    "id, id_number, name, phone, county_code, township, village, address, living_arrangement, categories, "
    "ability_level, emergency_contact, emergency_phone, birth_date, gender, status, family_bed, date_of_death, "
    "version, created_at, updated_at, home_lat, home_lon, family_doctor_contract, family_doctor_signed_on"
)


async def fetch_resident(conn: asyncpg.Connection, resident_id: uuid.UUID, *, for_update: bool = False):
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {RESIDENT_COLUMNS} FROM residents WHERE id = $1{lock}", resident_id)


async def owner_county_of(conn: asyncpg.Connection, id_number: str) -> str | None:
    return await conn.fetchval("SELECT county_code FROM residents WHERE id_number = $1", id_number)


async def write_audit(conn: asyncpg.Connection, *, actor: str, role: str, county_code: str | None, action: str,
                      resident_ids: list[uuid.UUID | None], fields: list[str], reason: str, trace_id: str | None,
                      id_number_hash: str | None = None) -> None:
    """One audit row per resident whose personal data was shown in clear (or was looked up: None
    when a lookup found no one). The table only takes inserts (migration 0005)."""
    await conn.executemany(
        "INSERT INTO audit_log (actor, role, county_code, action, resident_id, fields, reason, trace_id, "
        "id_number_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [(actor, role, county_code, action, rid, fields, reason, trace_id, id_number_hash)
         for rid in resident_ids],
    )


LOOKUP_ACTION = "lookup_id_number"


async def recent_lookups(conn: asyncpg.Connection, actor: str, since, limit: int) -> list:
    """When `actor` last looked people up by ID number (newest first, at most `limit`)."""
    rows = await conn.fetch("SELECT at FROM audit_log WHERE actor = $1 AND action = $2 AND at > $3 "
                            "ORDER BY at DESC LIMIT $4", actor, LOOKUP_ACTION, since, limit)
    return [r["at"] for r in rows]


async def resident_counts(conn: asyncpg.Connection) -> list:
    """Residents counted by the shared counting contract (county, dimension, bucket, n)."""
    return await conn.fetch(STATS_SQL)


async def transaction_time(conn: asyncpg.Connection):
    """The current transaction's start time (the snapshot's time under REPEATABLE READ)."""
    return await conn.fetchval("SELECT now()")


# The county reports the registry keeps (migration 0006): the latest report per facility and every
# training record, as forwarded (the payload's time is the one reporting orders reports by).
REPORTS_SQL = """
SELECT county_code, facility_id, event_id, e->'data'->>'facility_type' AS facility_type,
       (e->'data'->>'beds')::int AS beds, (e->'data'->>'nursing_beds')::int AS nursing_beds,
       (e->'data'->>'occupied')::int AS occupied, (e->'data'->>'trainees')::bigint AS trainees,
       (e->>'time')::timestamptz AS at
FROM county_reports, LATERAL (SELECT convert_from(payload, 'UTF8')::jsonb AS e) AS p
"""


async def county_reports(conn: asyncpg.Connection) -> list:
    """The kept county reports: latest per facility and every training record."""
    return await conn.fetch(REPORTS_SQL)


async def recently_changed(conn: asyncpg.Connection, seconds: float) -> list:
    """Residents changed in the last `seconds`, with the columns their counting buckets come from."""
    return await conn.fetch(RECENT_SQL, seconds)


async def assessments_of(conn: asyncpg.Connection, resident_id: uuid.UUID) -> list:
    return await conn.fetch("SELECT * FROM assessments WHERE resident_id = $1 ORDER BY assessed_on, created_at",
                            resident_id)


async def audit_page(conn: asyncpg.Connection, *, resident_id: uuid.UUID | None, actor: str | None,
                     since: datetime | None, before: int | None, limit: int) -> list:
    """Audit rows newest first, matching every filter given, at most `limit`."""
    clauses, params = [], []
    for sql, value in (("resident_id = ?", resident_id), ("actor = ?", actor), ("at >= ?", since),
                       ("id < ?", before)):
        if value is not None:
            params.append(value)
            clauses.append(sql.replace("?", f"${len(params)}"))
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    params.append(limit)
    return await conn.fetch(f"SELECT * FROM audit_log{where} ORDER BY id DESC LIMIT ${len(params)}", *params)


async def recent_republish_jobs(conn: asyncpg.Connection, limit: int = 20) -> list:
    return await conn.fetch("SELECT * FROM snapshot_jobs ORDER BY created_at DESC LIMIT $1", limit)


JOB_COLUMNS = ("id, county_code, actor, filename, file_sha256, status, total_rows, processed, accepted, "
               "updated, unchanged, rejected, error, created_at, finished_at")


async def fetch_import_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM import_jobs WHERE id = $1", job_id)


async def import_warnings(conn: asyncpg.Connection, job_id: uuid.UUID) -> list[str]:
    """A job's file-level warnings (error rows without a value)."""
    rows = await conn.fetch(
        "SELECT message FROM import_errors WHERE job_id = $1 AND value IS NULL ORDER BY row_no", job_id)
    return [r["message"] for r in rows]


async def import_jobs_page(conn: asyncpg.Connection, *, county_code: str | None,
                           before: tuple[datetime, uuid.UUID] | None, limit: int) -> list:
    """Import jobs newest first (of one county when given), after the (created_at, id) cursor."""
    clauses, params = [], []
    if county_code is not None:
        params.append(county_code)
        clauses.append(f"county_code = ${len(params)}")
    if before is not None:
        params += list(before)
        clauses.append(f"(created_at, id) < (${len(params) - 1}, ${len(params)})")
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    params.append(limit)
    return await conn.fetch(f"SELECT {JOB_COLUMNS} FROM import_jobs{where} "
                            f"ORDER BY created_at DESC, id DESC LIMIT ${len(params)}", *params)


async def import_errors_page(conn: asyncpg.Connection, job_id: uuid.UUID, limit: int,
                             after: int) -> tuple[list, bool]:
    """The problems of `limit` whole spreadsheet rows after row `after`, and whether more follow."""
    rows = await conn.fetch(
        """SELECT row_no, column_name, value, message FROM import_errors
           WHERE job_id = $1 AND row_no > $2 AND row_no <= (
               SELECT max(row_no) FROM (SELECT DISTINCT row_no FROM import_errors
                                        WHERE job_id = $1 AND row_no > $2 ORDER BY row_no LIMIT $3) page)
           ORDER BY row_no, column_name""", job_id, after, limit)
    more = bool(rows) and await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM import_errors WHERE job_id = $1 AND row_no > $2)", job_id, rows[-1]["row_no"])
    return rows, more


def import_errors_cursor(conn: asyncpg.Connection, job_id: uuid.UUID, prefetch: int = 2000):
    """Every problem of a job in report order, streamed (inside the caller's transaction)."""
    return conn.cursor("SELECT row_no, column_name, value, message FROM import_errors "
                       "WHERE job_id = $1 ORDER BY row_no, column_name", job_id, prefetch=prefetch)
