"""The orders schema's tables as SQLModel models — the source its Alembic migrations are generated
from (`alembic revision --autogenerate`, reviewed, committed) — and the queries this service needs.
Queries go through asyncpg on the same transaction as the outbox rows (STYLE #11); the models
are the schema's single definition."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, SmallInteger, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

SCHEMA = "orders"
metadata = SQLModel.metadata


def _ts(nullable: bool = True, default_now: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable,
                  server_default=text("now()") if default_now else None)


def _texts() -> Column:
    return Column(ARRAY(String), nullable=False, server_default=text("'{}'"))


def _fen(default: bool = True) -> Column:
    return Column(BigInteger, nullable=False, server_default=text("0") if default else None)


class ResidentProjection(SQLModel, table=True):
    """What orders knows of a resident, folded from the registry's events (never asked for)."""

    __tablename__ = "residents"
    __table_args__ = {"schema": SCHEMA}

    resident_id: uuid.UUID = Field(primary_key=True)
    county_code: str = Field(index=True)
    name: str
    birth_date: date
    township: str
    village: str
    living_arrangement: str
    categories: list[str] = Field(default_factory=list, sa_column=_texts())
    ability_level: int | None = Field(default=None, sa_column=Column(SmallInteger, nullable=True))
    status: str
    family_bed: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    home_lat: float | None = None
    home_lon: float | None = None
    date_of_death: date | None = None
    version: int


class CatalogItem(SQLModel, table=True):
    """The menu (seeded from shared/reference/service_categories.csv and domain/catalog.py)."""

    __tablename__ = "catalog_items"
    __table_args__ = {"schema": SCHEMA}

    code: str = Field(primary_key=True)
    name_zh: str
    name_en: str
    category: str
    unit: str
    base_price_fen: int = Field(sa_column=_fen(default=False))
    minutes_per_unit: int
    qualification: str | None = None
    eligibility: dict = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))


class Provider(SQLModel, table=True):
    __tablename__ = "providers"
    __table_args__ = {"schema": SCHEMA}

    id: str = Field(primary_key=True)
    name: str
    provider_type: str
    county_code: str = Field(index=True)
    active: bool = Field(default=True, sa_column_kwargs={"server_default": text("true")})
    version: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})
    created_at: datetime | None = Field(default=None, sa_column=_ts(False, True))
    updated_at: datetime | None = Field(default=None, sa_column=_ts(False, True))


class ProviderItem(SQLModel, table=True):
    """A catalog item a provider offers, at its own price and daily capacity (units a day)."""

    __tablename__ = "provider_items"
    __table_args__ = {"schema": SCHEMA}

    provider_id: str = Field(primary_key=True, foreign_key=f"{SCHEMA}.providers.id")
    service_code: str = Field(primary_key=True, foreign_key=f"{SCHEMA}.catalog_items.code", index=True)
    price_fen: int = Field(sa_column=_fen(default=False))
    daily_capacity: int


class Caregiver(SQLModel, table=True):
    __tablename__ = "caregivers"
    __table_args__ = {"schema": SCHEMA}

    id: str = Field(primary_key=True)
    provider_id: str = Field(foreign_key=f"{SCHEMA}.providers.id", index=True)
    name: str
    phone: str | None = None
    # Townships (乡镇街道) the caregiver covers; empty: the provider's whole county.
    service_area: list[str] = Field(default_factory=list, sa_column=_texts())
    active: bool = Field(default=True, sa_column_kwargs={"server_default": text("true")})
    version: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})
    created_at: datetime | None = Field(default=None, sa_column=_ts(False, True))
    updated_at: datetime | None = Field(default=None, sa_column=_ts(False, True))


class Certificate(SQLModel, table=True):
    __tablename__ = "certificates"
    __table_args__ = {"schema": SCHEMA}

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    caregiver_id: str = Field(foreign_key=f"{SCHEMA}.caregivers.id", index=True)
    kind: str
    level: str | None = None
    number: str
    expires_on: date | None = None


class Policy(SQLModel, table=True):
    """One version of the city's policy or of a county's override (never updated: a change is a
    new version, so an order's `policy_ref` always names what it was priced with)."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("scope", "version"), {"schema": SCHEMA})

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    scope: str
    version: int
    effective_from: date
    effective_to: date | None = None
    benefits: list | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    budgets: dict | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    note: str | None = None
    created_by: str
    created_at: datetime | None = Field(default=None, sa_column=_ts(False, True))


class BudgetSpend(SQLModel, table=True):
    """Fen committed from a county's monthly budget per public source (reserved when an order is
    placed, given back when it ends without a visit)."""

    __tablename__ = "budget_spend"
    __table_args__ = {"schema": SCHEMA}

    county_code: str = Field(primary_key=True)
    month: str = Field(primary_key=True)
    source: str = Field(primary_key=True)
    spent_fen: int = Field(sa_column=_fen())


class EntitlementUsage(SQLModel, table=True):
    __tablename__ = "entitlement_usage"
    __table_args__ = {"schema": SCHEMA}

    resident_id: uuid.UUID = Field(primary_key=True)
    month: str = Field(primary_key=True)
    benefit_code: str = Field(primary_key=True)
    used_fen: int = Field(sa_column=_fen())


class ProviderLoad(SQLModel, table=True):
    """Units booked per provider, service and day, against the item's daily capacity."""

    __tablename__ = "provider_load"
    __table_args__ = {"schema": SCHEMA}

    provider_id: str = Field(primary_key=True)
    service_code: str = Field(primary_key=True)
    day: date = Field(primary_key=True)
    booked: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        # The scheduler's scan: only orders with a timer running are in this index.
        Index("ix_orders_due_at", "due_at", postgresql_where=text("due_at IS NOT NULL")),
        Index("ix_orders_caregiver_open", "caregiver_id", postgresql_where=text("state = 'checked_in'")),
        Index("ix_orders_settlement", "county_code", "settlement_month", "provider_id"),
        {"schema": SCHEMA},
    )

    id: uuid.UUID = Field(primary_key=True)
    resident_id: uuid.UUID = Field(index=True)
    county_code: str = Field(index=True)
    provider_id: str = Field(index=True)
    caregiver_id: str | None = Field(default=None, index=True)
    channel: str
    call_reference: str | None = None
    state: str
    items: list = Field(sa_column=Column(JSONB, nullable=False))
    scheduled_start: datetime = Field(sa_column=_ts(False))
    scheduled_minutes: int
    service_day: date
    month: str
    price_fen: int = Field(sa_column=_fen(default=False))
    government_fen: int = Field(sa_column=_fen())
    collective_fen: int = Field(sa_column=_fen())
    social_fen: int = Field(sa_column=_fen())
    personal_fen: int = Field(sa_column=_fen())
    # What the order took from the resident's caps, per benefit code (given back if it ends unvisited).
    entitlement_use: dict = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=text("'{}'")))
    policy_ref: str
    subsidy_notes: list[str] = Field(default_factory=list, sa_column=_texts())
    placed_by: str
    placed_at: datetime | None = Field(default=None, sa_column=_ts(False, True))
    updated_at: datetime | None = Field(default=None, sa_column=_ts(False, True))
    version: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})
    accepted_at: datetime | None = Field(default=None, sa_column=_ts())
    assigned_at: datetime | None = Field(default=None, sa_column=_ts())
    check_in_at: datetime | None = Field(default=None, sa_column=_ts())
    check_in_lat: float | None = None
    check_in_lon: float | None = None
    check_in_accuracy_m: float | None = None
    check_in_distance_m: float | None = None
    check_out_at: datetime | None = Field(default=None, sa_column=_ts())
    check_out_lat: float | None = None
    check_out_lon: float | None = None
    check_out_accuracy_m: float | None = None
    check_out_distance_m: float | None = None
    actual_minutes: float | None = None
    # verified | exception (needs a reason and a county's confirmation) | confirmed
    evv_status: str | None = None
    evv_exceptions: list[str] = Field(default_factory=list, sa_column=_texts())
    exception_reason: str | None = None
    confirmed_by: str | None = None
    confirmed_at: datetime | None = Field(default=None, sa_column=_ts())
    rating: int | None = Field(default=None, sa_column=Column(SmallInteger, nullable=True))
    rating_comment: str | None = None
    end_reason: str | None = None
    ended_at: datetime | None = Field(default=None, sa_column=_ts())
    late_minutes: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    due_at: datetime | None = Field(default=None, sa_column=_ts())
    flags: list[str] = Field(default_factory=list, sa_column=_texts())
    # The statement month it is paid in (set once completed and verified or confirmed; a closed
    # month is never changed, so a late one goes to the next open month as an adjustment).
    settlement_month: str | None = None
    adjustment: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})


class SettlementClosure(SQLModel, table=True):
    """A closed statement month of one county: its lines are frozen in `statement`."""

    __tablename__ = "settlement_closures"
    __table_args__ = {"schema": SCHEMA}

    county_code: str = Field(primary_key=True)
    month: str = Field(primary_key=True)
    closed_by: str
    closed_at: datetime | None = Field(default=None, sa_column=_ts(False, True))
    totals: dict = Field(sa_column=Column(JSONB, nullable=False))


# ---------------------------------------------------------------- queries (asyncpg)

import asyncpg  # noqa: E402 - the queries below; the models above are the schema

from services.orders.domain.residents import ResidentFacts  # noqa: E402


def facts_from_row(r: asyncpg.Record) -> ResidentFacts:
    return ResidentFacts(
        resident_id=str(r["resident_id"]), county_code=r["county_code"], name=r["name"], birth_date=r["birth_date"],
        township=r["township"], village=r["village"], living_arrangement=r["living_arrangement"],
        categories=tuple(r["categories"]), ability_level=r["ability_level"], status=r["status"],
        family_bed=r["family_bed"], home_lat=r["home_lat"], home_lon=r["home_lon"],
        date_of_death=r["date_of_death"], version=r["version"])


async def load_residents(conn: asyncpg.Connection, ids: list[str]) -> dict[str, ResidentFacts]:
    if not ids:
        return {}
    rows = await conn.fetch("SELECT * FROM residents WHERE resident_id = ANY($1::text[]::uuid[])", ids)
    return {str(r["resident_id"]): facts_from_row(r) for r in rows}


async def fetch_resident(conn: asyncpg.Connection, resident_id: uuid.UUID) -> ResidentFacts | None:
    row = await conn.fetchrow("SELECT * FROM residents WHERE resident_id = $1", resident_id)
    return facts_from_row(row) if row is not None else None


async def save_residents(conn: asyncpg.Connection, states: list[ResidentFacts]) -> None:
    """Upsert folded residents in one statement (a catch-up folds hundreds of thousands)."""
    if not states:
        return
    cols = list(map(list, zip(*states)))
    cols[7] = [",".join(c) for c in cols[7]]  # categories as text: unnest cannot take ragged arrays
    await conn.execute(
        """INSERT INTO residents (resident_id, county_code, name, birth_date, township, village, living_arrangement,
               categories, ability_level, status, family_bed, home_lat, home_lon, date_of_death, version)
           SELECT r.id::uuid, r.county, r.name, r.birth, r.township, r.village, r.living,
                  CASE WHEN r.cats = '' THEN '{}'::text[] ELSE string_to_array(r.cats, ',') END,
                  r.level, r.status, r.bed, r.lat, r.lon, r.death, r.version
           FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::text[], $6::text[], $7::text[],
                       $8::text[], $9::smallint[], $10::text[], $11::boolean[], $12::float8[], $13::float8[],
                       $14::date[], $15::integer[])
                AS r(id, county, name, birth, township, village, living, cats, level, status, bed, lat, lon, death,
                     version)
           ON CONFLICT (resident_id) DO UPDATE SET county_code = EXCLUDED.county_code, name = EXCLUDED.name,
               birth_date = EXCLUDED.birth_date, township = EXCLUDED.township, village = EXCLUDED.village,
               living_arrangement = EXCLUDED.living_arrangement, categories = EXCLUDED.categories,
               ability_level = EXCLUDED.ability_level, status = EXCLUDED.status, family_bed = EXCLUDED.family_bed,
               home_lat = EXCLUDED.home_lat, home_lon = EXCLUDED.home_lon, date_of_death = EXCLUDED.date_of_death,
               version = EXCLUDED.version""",
        *cols)


async def flag_orders_after_death(conn: asyncpg.Connection, deaths: list[tuple[str, date]]) -> None:
    """A completed order dated on or after a death is flagged (SPEC §2: subsidy stops from that date)."""
    if deaths:
        await conn.execute(
            "UPDATE orders o SET flags = array_append(o.flags, 'after_death'), updated_at = now() "
            "FROM unnest($1::text[], $2::date[]) AS d(rid, day) "
            "WHERE o.resident_id = d.rid::uuid AND o.service_day >= d.day AND NOT 'after_death' = ANY(o.flags)",
            [d[0] for d in deaths], [d[1] for d in deaths])


async def fetch_order(conn: asyncpg.Connection, order_id: uuid.UUID, *, for_update: bool = False):
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT * FROM orders WHERE id = $1{lock}", order_id)


async def list_orders(conn: asyncpg.Connection, equal: list[tuple[str, object]],
                      before: tuple[datetime, uuid.UUID] | None, limit: int) -> list[asyncpg.Record]:
    """Orders whose columns equal the values given, before a (placed_at, id) cursor, newest first."""
    conditions, args = [], []
    for column, value in equal:
        args.append(value)
        conditions.append(f"{column} = ${len(args)}")
    if before is not None:
        args += list(before)
        conditions.append(f"(placed_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    sql = (f"SELECT * FROM orders {'WHERE ' + ' AND '.join(conditions) if conditions else ''} "
           f"ORDER BY placed_at DESC, id DESC LIMIT ${len(args)}")
    return await conn.fetch(sql, *args)


async def update_order(conn: asyncpg.Connection, order_id: uuid.UUID, changes: dict) -> asyncpg.Record:
    names = list(changes)
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    return await conn.fetchrow(
        f"UPDATE orders SET {sets}, version = version + 1, updated_at = now() WHERE id = $1 RETURNING *",
        order_id, *[changes[n] for n in names])


async def catalog_by_code(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    return {r["code"]: r for r in await conn.fetch("SELECT * FROM catalog_items")}


async def policy_rows(conn: asyncpg.Connection, scopes: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM policies WHERE scope = ANY($1::text[]) ORDER BY scope, version", scopes)


async def policies(conn: asyncpg.Connection, scope: str | None) -> list[asyncpg.Record]:
    """Every policy version, or one scope's, ordered by scope and version."""
    return await conn.fetch("SELECT * FROM policies WHERE ($1::text IS NULL OR scope = $1) ORDER BY scope, version",
                            scope)


async def closed_months(conn: asyncpg.Connection, county: str, from_month: str) -> set[str]:
    rows = await conn.fetch("SELECT month FROM settlement_closures WHERE county_code = $1 AND month >= $2",
                            county, from_month)
    return {r["month"] for r in rows}


# ---------------------------------------------------------------- placing an order (the hot path)
# Two statements between BEGIN and COMMIT (`eldercare bench orders`; docs/benchmarks.md): one
# claims the Idempotency-Key and reads everything the checks and the pricing need, one writes
# everything the order takes, records it with its event and stores the answer.

from shared.idempotency import claim_cte, remember_sql  # noqa: E402
from shared.messaging.schema import notify_channel  # noqa: E402

ORDER_FACTS_SQL = f"""
WITH {claim_cte("$4", "$5", "$6")}
SELECT c.*, r.*, to_jsonb(p) AS provider,
       (SELECT jsonb_object_agg(i.service_code, jsonb_build_array(i.price_fen, i.daily_capacity))
        FROM provider_items i WHERE i.provider_id = $2 AND i.service_code = ANY($8::text[])) AS offers,
       (SELECT array_agg(ARRAY[v.scope, v.version::text, v.id::text, v.created_at::text]
                         ORDER BY v.scope, v.version)
        FROM policies v WHERE v.scope IN ('city', r.county_code)) AS policies,
       (SELECT jsonb_object_agg(b.source, b.spent_fen) FROM budget_spend b
        WHERE b.county_code = r.county_code AND b.month = $3) AS spent,
       (SELECT jsonb_object_agg(u.benefit_code, u.used_fen) FROM entitlement_usage u
        WHERE u.resident_id = $1 AND u.month = $3) AS used,
       (SELECT g.provider_id FROM caregivers g WHERE g.id = $7) AS caregiver_provider
FROM claim c LEFT JOIN residents r ON r.resident_id = $1 LEFT JOIN providers p ON p.id = $2"""


async def order_facts(conn: asyncpg.Connection, resident_id: uuid.UUID, provider_id: str, month: str,
                      actor: str, key: str, fingerprint: str, caregiver_id: str | None,
                      service_codes: list[str]) -> asyncpg.Record:
    """Claim the key and read, unlocked: the resident, the provider and its offers of the services
    ordered, the policy
    versions of the city and the resident's county, the county's budget spent and the resident's
    caps used this month, and (for a caregiver placing) the caregiver's provider."""
    return await conn.fetchrow(ORDER_FACTS_SQL, resident_id, provider_id, month, actor, key, fingerprint,
                               caregiver_id, service_codes)


async def lock_allowances(conn: asyncpg.Connection, resident_id: uuid.UUID, county: str, month: str,
                          benefit_codes: list[str], sources: list[str]) -> tuple[dict, dict]:
    """Lock (creating them if missing) and read the resident's cap rows and the county's budget rows,
    caps first and each in key order, as `write_order` takes them, so orders cannot deadlock."""
    row = await conn.fetchrow(
        """WITH caps AS (
               INSERT INTO entitlement_usage AS u (resident_id, month, benefit_code)
               SELECT $1, $3, b FROM unnest($4::text[]) AS b ORDER BY b
               ON CONFLICT (resident_id, month, benefit_code) DO UPDATE SET used_fen = u.used_fen
               RETURNING benefit_code, used_fen),
           budget AS (
               INSERT INTO budget_spend AS b (county_code, month, source)
               SELECT $2, $3, s FROM unnest($5::text[]) AS s CROSS JOIN (SELECT count(*) FROM caps) AS after_caps
               ORDER BY s
               ON CONFLICT (county_code, month, source) DO UPDATE SET spent_fen = b.spent_fen
               RETURNING source, spent_fen)
           SELECT (SELECT jsonb_object_agg(benefit_code, used_fen) FROM caps) AS used,
                  (SELECT jsonb_object_agg(source, spent_fen) FROM budget) AS spent""",
        resident_id, county, month, benefit_codes, sources)
    return row["used"] or {}, row["spent"] or {}


# The columns an order is placed with; the others start at these values (the model's defaults),
# so the placed order is known without reading it back (tests/unit/test_orders_placing.py checks
# the two lists cover the model).
PLACED_COLUMNS = ("id", "resident_id", "county_code", "provider_id", "channel", "call_reference", "state", "items",
                  "scheduled_start", "scheduled_minutes", "service_day", "month", "price_fen", "government_fen",
                  "collective_fen", "social_fen", "personal_fen", "entitlement_use", "policy_ref", "subsidy_notes",
                  "placed_by", "placed_at", "updated_at", "due_at")
UNPLACED_DEFAULTS = {
    "caregiver_id": None, "version": 1, "accepted_at": None, "assigned_at": None, "check_in_at": None,
    "check_in_lat": None, "check_in_lon": None, "check_in_accuracy_m": None, "check_in_distance_m": None,
    "check_out_at": None, "check_out_lat": None, "check_out_lon": None, "check_out_accuracy_m": None,
    "check_out_distance_m": None, "actual_minutes": None, "evv_status": None, "evv_exceptions": [],
    "exception_reason": None, "confirmed_by": None, "confirmed_at": None, "rating": None, "rating_comment": None,
    "end_reason": None, "ended_at": None, "late_minutes": 0, "flags": [], "settlement_month": None,
    "adjustment": False,
}
_FIRST = 15  # the write statement's placeholders before the order's columns
_ORDER_VALUES = ", ".join(f"${_FIRST + i}" for i in range(len(PLACED_COLUMNS)))
_AFTER = _FIRST + len(PLACED_COLUMNS)

WRITE_ORDER_SQL = f"""
WITH caps AS (
    INSERT INTO entitlement_usage AS u (resident_id, month, benefit_code, used_fen)
    SELECT $1, $2, t.b, t.f FROM unnest($3::text[], $4::bigint[], $5::bigint[]) AS t(b, f, cap)
    WHERE t.f <= t.cap ORDER BY t.b
    ON CONFLICT (resident_id, month, benefit_code) DO UPDATE SET used_fen = u.used_fen + EXCLUDED.used_fen
    WHERE u.used_fen + EXCLUDED.used_fen <= ($5::bigint[])[array_position($3::text[], EXCLUDED.benefit_code)]
    RETURNING 1),
budget AS (
    INSERT INTO budget_spend AS b (county_code, month, source, spent_fen)
    SELECT $6, $2, t.s, t.f FROM unnest($7::text[], $8::bigint[], $9::bigint[]) AS t(s, f, budget)
    CROSS JOIN (SELECT count(*) FROM caps) AS after_caps
    WHERE t.f <= t.budget ORDER BY t.s
    ON CONFLICT (county_code, month, source) DO UPDATE SET spent_fen = b.spent_fen + EXCLUDED.spent_fen
    WHERE b.spent_fen + EXCLUDED.spent_fen <= ($9::bigint[])[array_position($7::text[], EXCLUDED.source)]
    RETURNING 1),
booked AS (
    INSERT INTO provider_load AS l (provider_id, service_code, day, booked)
    SELECT $10, t.s, $11, t.q FROM unnest($12::text[], $13::int[], $14::int[]) AS t(s, q, cap)
    CROSS JOIN (SELECT count(*) FROM budget) AS after_budget
    WHERE t.q <= t.cap ORDER BY t.s
    ON CONFLICT (provider_id, service_code, day) DO UPDATE SET booked = l.booked + EXCLUDED.booked
    WHERE l.booked + EXCLUDED.booked <= ($14::int[])[array_position($12::text[], EXCLUDED.service_code)]
    RETURNING service_code),
placed AS (
    INSERT INTO orders ({", ".join(PLACED_COLUMNS)}) VALUES ({_ORDER_VALUES})),
event AS (
    INSERT INTO outbox (event_id, topic, key, payload) VALUES (${_AFTER}, ${_AFTER + 1}, ${_AFTER + 2}, ${_AFTER + 3})),
answer AS (
    {remember_sql(f"${_AFTER + 4}", f"${_AFTER + 5}", f"${_AFTER + 6}", f"${_AFTER + 7}", f"${_AFTER + 8}")})
SELECT (SELECT count(*) FROM caps) AS caps, (SELECT count(*) FROM budget) AS budgets,
       (SELECT coalesce(array_agg(service_code), '{{}}') FROM booked) AS booked, pg_notify(${_AFTER + 9}, '') AS woken"""


async def write_order(conn: asyncpg.Connection, order: dict, caps: list[tuple[str, int, int]],
                      spend: list[tuple[str, int, int]], load: list[tuple[str, int, int]], outbox: tuple,
                      actor: str, key: str, answer: tuple[int, object, dict], schema: str) -> asyncpg.Record:
    """In one statement: take the resident's caps, the county's budget (each (code, fen, limit), never
    past the limit) and the provider's capacity ((service, units, daily capacity)), insert the order
    and its outbox row, store the Idempotency-Key's answer and wake the relay. Returns how many cap
    and budget rows were taken and which services booked: fewer than asked means the caller rolls
    back (another order took them meanwhile)."""
    return await conn.fetchrow(
        WRITE_ORDER_SQL,
        order["resident_id"], order["month"], [c[0] for c in caps], [c[1] for c in caps], [c[2] for c in caps],
        order["county_code"], [s[0] for s in spend], [s[1] for s in spend], [s[2] for s in spend],
        order["provider_id"], order["service_day"], [x[0] for x in load], [x[1] for x in load], [x[2] for x in load],
        *(order[c] for c in PLACED_COLUMNS), *outbox[:4], actor, key, *answer, notify_channel(schema))
