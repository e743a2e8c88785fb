"""Reporting's order and alert facts (SQLModel tables, described here and created by the
migrations; a test checks the two agree) and the figures per county and the city computed from
them (services/reporting/domain/services.py folds the events into the rows)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from sqlalchemy import BigInteger, Column, DateTime, SmallInteger, text
from sqlmodel import Field, SQLModel

from services.reporting.domain.folding import CITY
from services.reporting.domain.services import (
    NOT_COMPLETED, ON_TIME_GRACE, OPEN_ORDER_STATES, AlertFacts, OrderFacts, alerts_view, orders_view,
)
from shared.regions import load_counties

SCHEMA = "reporting"
metadata = SQLModel.metadata
TABLES = ("order_facts", "alert_facts")


def _ts() -> Column:
    return Column(DateTime(timezone=True), nullable=True)


def _fen() -> Column:
    return Column(BigInteger, nullable=False, server_default=text("0"))


class OrderFact(SQLModel, table=True):
    __tablename__ = "order_facts"
    __table_args__ = {"schema": SCHEMA}

    order_id: str = Field(primary_key=True)
    county_code: str
    category: str | None = None
    service_code: str | None = None
    state: str | None = None
    placed_at: datetime | None = Field(default=None, sa_column=_ts())
    scheduled_start: datetime | None = Field(default=None, sa_column=_ts())
    accepted_at: datetime | None = Field(default=None, sa_column=_ts())
    checked_in_at: datetime | None = Field(default=None, sa_column=_ts())
    completed: bool = False
    evv_status: str | None = None
    confirmed: bool = False
    late: bool = False
    rating: int | None = Field(default=None, sa_column=Column(SmallInteger, nullable=True))
    settled: bool = False
    government_fen: int = Field(default=0, sa_column=_fen())
    collective_fen: int = Field(default=0, sa_column=_fen())
    social_fen: int = Field(default=0, sa_column=_fen())
    personal_fen: int = Field(default=0, sa_column=_fen())


class AlertFact(SQLModel, table=True):
    __tablename__ = "alert_facts"
    __table_args__ = {"schema": SCHEMA}

    alert_id: str = Field(primary_key=True)
    county_code: str
    severity: str | None = None
    cause: str | None = None
    raised_at: datetime | None = Field(default=None, sa_column=_ts())
    acked_at: datetime | None = Field(default=None, sa_column=_ts())
    ack_seconds: float | None = None
    resolved_at: datetime | None = Field(default=None, sa_column=_ts())
    resolve_seconds: float | None = None
    escalated: bool = False
    silenced: bool = False


ORDER_COLUMNS = OrderFacts._fields
ALERT_COLUMNS = AlertFacts._fields
_ORDER_TYPES = ("text", "text", "text", "text", "text", "timestamptz", "timestamptz", "timestamptz", "timestamptz",
                "boolean", "text", "boolean", "boolean", "smallint", "boolean", "bigint", "bigint", "bigint", "bigint")
_ALERT_TYPES = ("text", "text", "text", "text", "timestamptz", "timestamptz", "float8", "timestamptz", "float8",
                "boolean", "boolean")


async def load_orders(conn: asyncpg.Connection, ids: set[str]) -> dict[str, OrderFacts]:
    if not ids:
        return {}
    rows = await conn.fetch(f"SELECT {', '.join(ORDER_COLUMNS)} FROM order_facts WHERE order_id = ANY($1::text[])",
                            list(ids))
    return {r["order_id"]: OrderFacts(*r.values()) for r in rows}


async def load_alerts(conn: asyncpg.Connection, ids: set[str]) -> dict[str, AlertFacts]:
    if not ids:
        return {}
    rows = await conn.fetch(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alert_facts WHERE alert_id = ANY($1::text[])",
                            list(ids))
    return {r["alert_id"]: AlertFacts(*r.values()) for r in rows}


async def _upsert(conn: asyncpg.Connection, table: str, key: str, columns: tuple[str, ...], types: tuple[str, ...],
                  rows: list[tuple]) -> None:
    if not rows:
        return
    values = [list(c) for c in zip(*rows)]
    arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}", *values)


async def save_orders(conn: asyncpg.Connection, facts: dict[str, OrderFacts]) -> None:
    await _upsert(conn, "order_facts", "order_id", ORDER_COLUMNS, _ORDER_TYPES, list(facts.values()))


async def save_alerts(conn: asyncpg.Connection, facts: dict[str, AlertFacts]) -> None:
    await _upsert(conn, "alert_facts", "alert_id", ALERT_COLUMNS, _ALERT_TYPES, list(facts.values()))


# One row per county and one for the city (GROUPING SETS): exact percentiles for both.
_ORDERS_SQL = f"""
SELECT CASE WHEN GROUPING(county_code) = 1 THEN '{CITY}' ELSE county_code END AS scope,
    count(*) FILTER (WHERE placed_at IS NOT NULL) AS placed,
    count(*) FILTER (WHERE state = ANY($1::text[])) AS open,
    count(*) FILTER (WHERE completed) AS completed,
    count(*) FILTER (WHERE NOT completed AND state = ANY($2::text[])) AS not_completed,
    count(*) FILTER (WHERE accepted_at IS NOT NULL) AS accepted,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM accepted_at - placed_at)) AS accept_median,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM accepted_at - placed_at)) AS accept_p90,
    count(*) FILTER (WHERE checked_in_at IS NOT NULL) AS checked_in,
    count(*) FILTER (WHERE checked_in_at <= scheduled_start + $3::interval) AS on_time,
    count(*) FILTER (WHERE late) AS late,
    count(*) FILTER (WHERE completed AND evv_status = 'verified') AS evv_verified,
    count(*) FILTER (WHERE completed AND evv_status = 'exception') AS evv_exceptions,
    count(*) FILTER (WHERE confirmed) AS evv_confirmed,
    count(rating) AS rated, avg(rating) AS rating_mean,
    {", ".join(f"count(*) FILTER (WHERE rating = {k}) AS rating_{k}" for k in range(1, 6))},
    count(*) FILTER (WHERE settled) AS settled,
    sum(government_fen) AS government_fen, sum(collective_fen) AS collective_fen,
    sum(social_fen) AS social_fen, sum(personal_fen) AS personal_fen
FROM order_facts GROUP BY GROUPING SETS ((county_code), ())
"""
_ORDER_BUCKETS_SQL = f"""
SELECT CASE WHEN GROUPING(county_code) = 1 THEN '{CITY}' ELSE county_code END AS scope, $1 AS dim,
       category AS bucket, count(*) AS n
FROM order_facts WHERE category IS NOT NULL GROUP BY GROUPING SETS ((county_code, category), (category))
UNION ALL
SELECT CASE WHEN GROUPING(county_code) = 1 THEN '{CITY}' ELSE county_code END, $2, state, count(*)
FROM order_facts WHERE state IS NOT NULL GROUP BY GROUPING SETS ((county_code, state), (state))
"""
_ALERTS_SQL = f"""
SELECT CASE WHEN GROUPING(county_code) = 1 THEN '{CITY}' ELSE county_code END AS scope,
    count(*) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced) AS alerts,
    count(*) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced AND severity = 'critical') AS critical,
    count(*) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced AND resolved_at IS NULL) AS open,
    count(*) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced AND ack_seconds IS NOT NULL) AS acknowledged,
    count(*) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced AND ack_seconds <= 60) AS within_60,
    count(*) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced AND ack_seconds <= 180) AS within_180,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY ack_seconds) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced)
        AS ack_median,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY ack_seconds) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced)
        AS ack_p90,
    count(*) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced AND resolve_seconds IS NOT NULL) AS resolved,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY resolve_seconds)
        FILTER (WHERE raised_at IS NOT NULL AND NOT silenced) AS resolve_median,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY resolve_seconds)
        FILTER (WHERE raised_at IS NOT NULL AND NOT silenced) AS resolve_p90,
    count(*) FILTER (WHERE raised_at IS NOT NULL AND NOT silenced AND escalated) AS escalations,
    count(*) FILTER (WHERE silenced) AS silenced
FROM alert_facts GROUP BY GROUPING SETS ((county_code), ())
"""


async def service_views(conn: asyncpg.Connection, scopes: set[str] | None = None) -> dict[str, dict]:
    """{scope: {"orders": …, "alerts": …}} for every county and the city (or only `scopes`)."""
    orders = {r["scope"]: dict(r) for r in await conn.fetch(
        _ORDERS_SQL, list(OPEN_ORDER_STATES), list(NOT_COMPLETED), ON_TIME_GRACE)}
    buckets: dict[tuple[str, str], dict[str, int]] = {}
    for r in await conn.fetch(_ORDER_BUCKETS_SQL, "category", "state"):
        buckets.setdefault((r["scope"], r["dim"]), {})[r["bucket"]] = r["n"]
    alerts = {r["scope"]: dict(r) for r in await conn.fetch(_ALERTS_SQL)}
    wanted = scopes if scopes is not None else {CITY, *load_counties()}
    return {s: {"orders": orders_view(orders.get(s), buckets.get((s, "category"), {}), buckets.get((s, "state"), {})),
                "alerts": alerts_view(alerts.get(s))} for s in wanted}
