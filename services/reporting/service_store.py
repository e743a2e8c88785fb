"""Reporting's order and alert facts (SQLModel tables, described here and created by the
migrations; a test checks the two agree) and the figures per county and the city computed from
them (services/reporting/domain/services.py folds the events into the rows)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from sqlalchemy import BigInteger, Column, DateTime, SmallInteger, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from services.reporting.domain.folding import CITY
from services.reporting.domain.services import (
    NOT_COMPLETED, ON_TIME_GRACE, OPEN_ORDER_STATES, AlertFacts, OrderFacts, alerts_view, orders_view,
)
from shared.regions import load_counties

SCHEMA = "reporting"
metadata = SQLModel.metadata
TABLES = ("order_facts", "alert_facts", "service_figures")


def _ts() -> Column:
    return Column(DateTime(timezone=True), nullable=True)


def _fen() -> Column:
    return Column(BigInteger, nullable=False, server_default=text("0"))


class OrderFact(SQLModel, table=True):
    __tablename__ = "order_facts"
    __table_args__ = {"schema": SCHEMA}

    order_id: str = Field(primary_key=True)
    county_code: str = Field(index=True)
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
    county_code: str = Field(index=True)
    severity: str | None = None
    cause: str | None = None
    raised_at: datetime | None = Field(default=None, sa_column=_ts())
    acked_at: datetime | None = Field(default=None, sa_column=_ts())
    ack_seconds: float | None = None
    resolved_at: datetime | None = Field(default=None, sa_column=_ts())
    resolve_seconds: float | None = None
    escalated: bool = False
    silenced: bool = False
    closed_by_system: bool = False


class ServiceFigures(SQLModel, table=True):
    """Each scope's order and alert figures as the fold last computed them (raw sums and
    percentiles; domain/services.py turns them into the views)."""

    __tablename__ = "service_figures"
    __table_args__ = {"schema": SCHEMA}

    scope: str = Field(primary_key=True)
    orders: dict = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    alerts: dict = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))


ORDER_COLUMNS = OrderFacts._fields
ALERT_COLUMNS = AlertFacts._fields
_ORDER_TYPES = ("text", "text", "text", "text", "text", "timestamptz", "timestamptz", "timestamptz", "timestamptz",
                "boolean", "text", "boolean", "boolean", "smallint", "boolean", "bigint", "bigint", "bigint", "bigint")
_ALERT_TYPES = ("text", "text", "text", "text", "timestamptz", "timestamptz", "float8", "timestamptz", "float8",
                "boolean", "boolean", "boolean")


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


# Per county (only those a batch touched): every figure but the city's percentiles is a sum of the
# counties', so the city row adds them up and only sorts all rows for its medians and p90s.
_ORDERS_SQL = f"""
SELECT county_code AS scope,
    count(*) FILTER (WHERE placed_at IS NOT NULL) AS placed,
    count(*) FILTER (WHERE state = ANY($1::text[])) AS open,
    count(*) FILTER (WHERE completed) AS completed,
    count(*) FILTER (WHERE NOT completed AND state = ANY($2::text[])) AS not_completed,
    count(*) FILTER (WHERE accepted_at IS NOT NULL) AS accepted,
    count(*) FILTER (WHERE checked_in_at IS NOT NULL) AS checked_in,
    count(*) FILTER (WHERE checked_in_at <= scheduled_start + $3::interval) AS on_time,
    count(*) FILTER (WHERE late) AS late,
    count(*) FILTER (WHERE completed AND evv_status = 'verified') AS evv_verified,
    count(*) FILTER (WHERE completed AND evv_status = 'exception') AS evv_exceptions,
    count(*) FILTER (WHERE confirmed) AS evv_confirmed,
    count(rating) AS rated, coalesce(sum(rating), 0)::bigint AS rating_sum,
    {", ".join(f"count(*) FILTER (WHERE rating = {k}) AS rating_{k}" for k in range(1, 6))},
    count(*) FILTER (WHERE settled) AS settled,
    sum(government_fen)::bigint AS government_fen, sum(collective_fen)::bigint AS collective_fen,
    sum(social_fen)::bigint AS social_fen, sum(personal_fen)::bigint AS personal_fen
FROM order_facts WHERE county_code = ANY($4::text[]) GROUP BY county_code
"""
# Percentiles apart, over only the values they sort: with the counts above they made PostgreSQL sort
# every whole row by county (several times slower at 100,000 orders).
_PERCENTILES_SQL = """
SELECT county_code COLLATE "C" AS scope, 'accept' AS name,
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY extract(epoch FROM accepted_at - placed_at)::float8) AS pair
FROM order_facts WHERE county_code = ANY($1::text[]) AND accepted_at IS NOT NULL AND placed_at IS NOT NULL
GROUP BY 1
UNION ALL
SELECT county_code COLLATE "C", 'ack', percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY ack_seconds)
FROM alert_facts WHERE county_code = ANY($1::text[]) AND raised_at IS NOT NULL AND NOT silenced AND NOT closed_by_system
    AND ack_seconds IS NOT NULL GROUP BY 1
UNION ALL
SELECT county_code COLLATE "C", 'resolve', percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY resolve_seconds)
FROM alert_facts WHERE county_code = ANY($1::text[]) AND raised_at IS NOT NULL AND NOT silenced AND NOT closed_by_system
    AND resolve_seconds IS NOT NULL GROUP BY 1
"""
_ORDER_BUCKETS_SQL = """
SELECT county_code AS scope, 'category' AS dim, category AS bucket, count(*) AS n
FROM order_facts WHERE category IS NOT NULL AND county_code = ANY($1::text[]) GROUP BY 1, 3
UNION ALL
SELECT county_code, 'state', state, count(*)
FROM order_facts WHERE state IS NOT NULL AND county_code = ANY($1::text[]) GROUP BY 1, 3
"""
_COUNTED = "raised_at IS NOT NULL AND NOT silenced AND NOT closed_by_system"
_ALERTS_SQL = f"""
SELECT county_code AS scope,
    count(*) FILTER (WHERE {_COUNTED}) AS alerts,
    count(*) FILTER (WHERE {_COUNTED} AND severity = 'critical') AS critical,
    count(*) FILTER (WHERE {_COUNTED} AND resolved_at IS NULL) AS open,
    count(*) FILTER (WHERE {_COUNTED} AND ack_seconds IS NOT NULL) AS acknowledged,
    count(*) FILTER (WHERE {_COUNTED} AND ack_seconds <= 60) AS within_60,
    count(*) FILTER (WHERE {_COUNTED} AND ack_seconds <= 180) AS within_180,
    count(*) FILTER (WHERE {_COUNTED} AND resolve_seconds IS NOT NULL) AS resolved,
    count(*) FILTER (WHERE {_COUNTED} AND escalated) AS escalations,
    count(*) FILTER (WHERE silenced) AS silenced
FROM alert_facts WHERE county_code = ANY($1::text[]) GROUP BY county_code
"""
_CITY_PERCENTILES_SQL = f"""
SELECT (SELECT percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY extract(epoch FROM accepted_at - placed_at)::float8)
        FROM order_facts) AS accept,
       (SELECT percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY ack_seconds) FROM alert_facts
        WHERE {_COUNTED}) AS ack,
       (SELECT percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY resolve_seconds) FROM alert_facts
        WHERE {_COUNTED}) AS resolve
"""
PERCENTILES = ("accept", "ack", "resolve")


def _raw(record) -> dict:
    """An aggregate row as JSON: the percentile pairs split into `<name>_median` and `<name>_p90`."""
    out = {}
    for key, value in dict(record).items():
        if key == "scope":
            continue
        if key in PERCENTILES:
            pair = value or [None, None]
            out[f"{key}_median"], out[f"{key}_p90"] = pair[0], pair[1]
        else:
            out[key] = value
    return out


def _summed(rows: list[dict]) -> dict:
    """The city's row: every county's figures added up, but for the percentiles (set by the caller)."""
    total: dict = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, (int, float)) and not key.endswith(("_median", "_p90")):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                slot = total.setdefault(key, {})
                for bucket, n in value.items():
                    slot[bucket] = slot.get(bucket, 0) + n
    return total


async def refresh(conn: asyncpg.Connection, counties: set[str]) -> dict[str, dict]:
    """Recompute the figures of these counties and the city from the facts, keep them in
    `service_figures` (what every read takes) and return {scope: {"orders", "alerts"}} for them."""
    touched = sorted(c for c in counties if c != CITY)
    orders = {r["scope"]: _raw(r) for r in await conn.fetch(
        _ORDERS_SQL, list(OPEN_ORDER_STATES), list(NOT_COMPLETED), ON_TIME_GRACE, touched)}
    for r in await conn.fetch(_ORDER_BUCKETS_SQL, touched):
        orders.setdefault(r["scope"], {}).setdefault(f"by_{r['dim']}", {})[r["bucket"]] = r["n"]
    alerts = {r["scope"]: _raw(r) for r in await conn.fetch(_ALERTS_SQL, touched)}
    for r in await conn.fetch(_PERCENTILES_SQL, touched):
        target = (orders if r["name"] == "accept" else alerts).setdefault(r["scope"], {})
        target[f"{r['name']}_median"], target[f"{r['name']}_p90"] = r["pair"][0], r["pair"][1]
    fresh = {c: (orders.get(c, {}), alerts.get(c, {})) for c in touched}
    others = {r["scope"]: (r["orders"], r["alerts"]) for r in await conn.fetch(
        "SELECT scope, orders, alerts FROM service_figures WHERE scope <> ALL($1::text[]) AND scope <> $2",
        touched, CITY)}
    every = {**others, **fresh}
    city_orders = _summed([o for o, _ in every.values()])
    city_alerts = _summed([a for _, a in every.values()])
    pct = await conn.fetchrow(_CITY_PERCENTILES_SQL)
    for target, names in ((city_orders, ("accept",)), (city_alerts, ("ack", "resolve"))):
        for name in names:
            pair = pct[name] or [None, None]
            target[f"{name}_median"], target[f"{name}_p90"] = pair[0], pair[1]
    fresh[CITY] = (city_orders, city_alerts)
    await conn.execute(
        "INSERT INTO service_figures (scope, orders, alerts) SELECT * FROM unnest($1::text[], $2::jsonb[], $3::jsonb[]) "
        "ON CONFLICT (scope) DO UPDATE SET orders = EXCLUDED.orders, alerts = EXCLUDED.alerts",
        list(fresh), [o for o, _ in fresh.values()], [a for _, a in fresh.values()])
    return {scope: _views(o, a) for scope, (o, a) in fresh.items()}


def _views(orders: dict | None, alerts: dict | None) -> dict:
    orders = orders or {}
    return {"orders": orders_view(orders, orders.get("by_category", {}), orders.get("by_state", {})),
            "alerts": alerts_view(alerts)}


async def service_views(conn: asyncpg.Connection) -> dict[str, dict]:
    """{scope: {"orders": …, "alerts": …}} for every county and the city, as the fold last left them."""
    rows = {r["scope"]: (r["orders"], r["alerts"]) for r in await conn.fetch(
        "SELECT scope, orders, alerts FROM service_figures")}
    return {s: _views(*rows.get(s, (None, None))) for s in (CITY, *load_counties())}
