"""Read queries of the alerts API (listing, one alert and its timeline, KPIs)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.alerts.domain.kpis import AlertTimes, summarise
from services.alerts.store import ALERT_COLUMNS, ALERT_FROM


async def list_alerts(conn: asyncpg.Connection, *, county: str | None, status: list[str] | None,
                      severity: str | None, cause: str | None, level: str | None, resident_id: uuid.UUID | None,
                      since: datetime | None, until: datetime | None, include_silenced: bool,
                      after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[asyncpg.Record]:
    where, args = [], []

    def add(clause: str, value) -> None:
        args.append(value)
        where.append(clause.replace("?", f"${len(args)}"))

    if county is not None:
        add("a.county_code = ?", county)
    if status:
        add("a.status = ANY(?::text[])", status)
    if severity:
        add("a.severity = ?", severity)
    if cause:
        add("a.cause = ?", cause)
    if level:
        add("a.level = ?", level)
    if resident_id:
        add("a.resident_id = ?", resident_id)
    if since:
        add("a.raised_at >= ?", since)
    if until:
        add("a.raised_at < ?", until)
    if not include_silenced:
        where.append("a.silence_id IS NULL")
    if after is not None:
        args.extend(after)
        where.append(f"(a.raised_at, a.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    sql = (f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM} " + (f"WHERE {' AND '.join(where)} " if where else "")
           + f"ORDER BY a.raised_at DESC, a.id DESC LIMIT ${len(args)}")
    return await conn.fetch(sql, *args)


async def alert(conn: asyncpg.Connection, alert_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM} WHERE a.id = $1", alert_id)


async def stream_seq(conn: asyncpg.Connection) -> int:
    """The latest step's sequence number (0 before any), where a stream reader resumes from."""
    return await conn.fetchval("SELECT coalesce(max(seq), 0) FROM alert_steps")


async def timeline(conn: asyncpg.Connection, alert_id: uuid.UUID) -> list[asyncpg.Record]:
    """An alert's steps in order."""
    return await conn.fetch("SELECT seq, kind, at, actor, data FROM alert_steps WHERE alert_id = $1 ORDER BY seq",
                            alert_id)


async def kpis(conn: asyncpg.Connection, *, county: str | None, since: datetime | None, until: datetime,
               severity: str | None) -> dict:
    rows = await conn.fetch(
        "SELECT county_code, severity, extract(epoch FROM acknowledged_at - raised_at) AS ack, "
        "extract(epoch FROM resolved_at - raised_at) AS res, escalated_at IS NOT NULL AS escalated FROM alerts "
        "WHERE ($1::text IS NULL OR county_code = $1) AND ($2::timestamptz IS NULL OR raised_at >= $2) "
        "AND raised_at < $3 AND ($4::text IS NULL OR severity = $4) AND silence_id IS NULL "
        # Closed by the system before an operator answered (the elder came back into the zone, the
        # overdue visit was logged): no answer to measure, and the system's acknowledgement is none.
        "AND acknowledged_by IS DISTINCT FROM 'system'",
        county, since, until, severity)
    by_county: dict[str, list[AlertTimes]] = {}
    for r in rows:
        by_county.setdefault(r["county_code"], []).append(AlertTimes(
            r["severity"], float(r["ack"]) if r["ack"] is not None else None,
            float(r["res"]) if r["res"] is not None else None, r["escalated"]))
    coverage = await conn.fetch(
        "SELECT county_code, count(*) AS owed, count(*) FILTER (WHERE visit_due_at > now()) AS on_time "
        "FROM residents WHERE visit_group IN ('high_risk', 'key_group') AND status = 'active' "
        "AND ($1::text IS NULL OR county_code = $1) GROUP BY county_code", county)
    cover = {r["county_code"]: {"owed": r["owed"], "on_time": r["on_time"],
                                "share": round(r["on_time"] / r["owed"], 4) if r["owed"] else None} for r in coverage}
    counties = {code: {**summarise(times), "visit_coverage": cover.get(code)} for code, times in sorted(by_county.items())}
    for code, c in cover.items():
        counties.setdefault(code, {**summarise([]), "visit_coverage": c})
    owed = sum(c["owed"] for c in cover.values())
    on_time = sum(c["on_time"] for c in cover.values())
    city = {**summarise([t for times in by_county.values() for t in times]),
            "visit_coverage": {"owed": owed, "on_time": on_time, "share": round(on_time / owed, 4) if owed else None}}
    return {"since": since, "until": until, "targets": {"acked_within_60s": 0.975, "acked_within_180s": 0.99},
            "city" if county is None else "scope": city, "counties": counties}
