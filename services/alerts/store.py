"""The alerts service's tables (SQLModel, describing what migrations/ creates; a test checks the
two agree) and the queries the handlers and routers share. Queries are asyncpg: the consumer's
hot path writes a batch in a handful of round trips."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg
from sqlalchemy import Column, LargeBinary, String
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from services.alerts.domain.rules import Rules, effective

SCHEMA = "alerts"
STREAM_CHANNEL = "alerts_stream"


class Resident(SQLModel, table=True):
    __tablename__ = "residents"
    __table_args__ = {"schema": SCHEMA}

    resident_id: uuid.UUID = Field(primary_key=True)
    county_code: str
    name: str
    birth_date: date
    gender: str
    township: str
    village: str
    living_arrangement: str
    categories: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String)))
    ability_level: int | None = None
    status: str
    emergency_contact: str | None = None
    version: int
    care_since: datetime
    visit_group: str | None = None
    last_visit_at: datetime | None = None
    visit_due_at: datetime | None = None
    visit_warned_at: datetime | None = None
    home_lat: float | None = None
    home_lon: float | None = None


class Signal(SQLModel, table=True):
    __tablename__ = "signals"
    __table_args__ = {"schema": SCHEMA}

    resident_id: uuid.UUID = Field(primary_key=True)
    county_code: str
    last_at: datetime
    last_id: str
    solitary: bool = False
    alerted_for: datetime | None = None


class VitalState(SQLModel, table=True):
    __tablename__ = "vital_states"
    __table_args__ = {"schema": SCHEMA}

    resident_id: uuid.UUID = Field(primary_key=True)
    metric: str = Field(primary_key=True)
    state: str


class RuleVersion(SQLModel, table=True):
    __tablename__ = "rules"
    __table_args__ = {"schema": SCHEMA}

    scope: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    body: dict = Field(sa_column=Column(JSONB))
    created_by: str
    created_at: datetime
    note: str | None = None


class Alert(SQLModel, table=True):
    __tablename__ = "alerts"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    county_code: str
    resident_id: uuid.UUID | None = None
    device_id: str | None = None
    cause: str
    severity: str
    status: str = "open"
    level: str = "county"
    dedupe_key: str
    count: int = 1
    first_seen_at: datetime
    last_seen_at: datetime
    raised_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    dispatched_at: datetime | None = None
    dispatch: list = Field(default_factory=list, sa_column=Column(JSONB))
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    resolution_note: str | None = None
    escalate_at: datetime | None = None
    escalated_at: datetime | None = None
    silence_id: uuid.UUID | None = None
    rule_version: str
    incident_id: uuid.UUID
    details: dict = Field(default_factory=dict, sa_column=Column(JSONB))
    source_event_id: str | None = None


class AlertStep(SQLModel, table=True):
    __tablename__ = "alert_steps"
    __table_args__ = {"schema": SCHEMA}

    seq: int = Field(primary_key=True)
    event_id: str
    alert_id: uuid.UUID
    county_code: str
    kind: str
    at: datetime
    actor: str | None = None
    data: dict = Field(default_factory=dict, sa_column=Column(JSONB))


class SilenceRow(SQLModel, table=True):
    __tablename__ = "silences"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    county_code: str
    cause: str | None = None
    resident_id: str | None = None
    device_id: str | None = None
    owner: str
    reason: str
    starts_at: datetime
    expires_at: datetime
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None


class Subscription(SQLModel, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = {"schema": SCHEMA}

    id: uuid.UUID = Field(primary_key=True)
    url: str
    county_code: str | None = None
    severities: list[str] = Field(sa_column=Column(ARRAY(String)))
    secret: str
    created_by: str
    created_at: datetime
    active: bool = True


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(primary_key=True)
    subscription_id: uuid.UUID = Field(foreign_key=f"{SCHEMA}.subscriptions.id")
    msg_id: str
    payload: bytes = Field(sa_column=Column(LargeBinary))
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime
    last_error: str | None = None
    last_status: int | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = {"schema": SCHEMA}

    order_id: str = Field(primary_key=True)
    resident_id: uuid.UUID | None = None
    county_code: str
    service_code: str | None = None
    provider_id: str | None = None
    scheduled_start: datetime | None = None
    scheduled_minutes: int | None = None
    state: str
    caregiver_id: str | None = None
    checked_in_at: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    late_level: int = 0
    late_check_at: datetime | None = None


class Geofence(SQLModel, table=True):
    """A safe zone set for a resident through the API (a home zone needs no row: it is derived)."""

    __tablename__ = "geofences"
    __table_args__ = {"schema": SCHEMA}

    resident_id: uuid.UUID = Field(primary_key=True)
    county_code: str
    lat: float
    lon: float
    radius_m: float
    device_id: str | None = None
    note: str | None = None
    set_by: str
    set_at: datetime


class GeofenceState(SQLModel, table=True):
    __tablename__ = "geofence_states"
    __table_args__ = {"schema": SCHEMA}

    resident_id: uuid.UUID = Field(primary_key=True)
    state: str
    streak: int = 0
    distance_m: float | None = None
    last_fix_at: datetime | None = None
    zone_source: str | None = None


class Contact(SQLModel, table=True):
    """A resident's emergency contact, `position` 1 called first."""

    __tablename__ = "contacts"
    __table_args__ = {"schema": SCHEMA}

    resident_id: uuid.UUID = Field(primary_key=True)
    position: int = Field(primary_key=True)
    county_code: str
    name: str
    relation: str | None = None
    phone: str
    updated_by: str
    updated_at: datetime


class Notification(SQLModel, table=True):
    """One emergency contact to notify about one alert, with its attempts."""

    __tablename__ = "notifications"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(primary_key=True)
    alert_id: uuid.UUID
    county_code: str
    resident_id: uuid.UUID
    position: int
    name: str
    phone: str
    trigger: str
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


class AuditEntry(SQLModel, table=True):
    """Append-only (a trigger refuses UPDATE, DELETE, TRUNCATE): every phone number shown in clear."""

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


# ------------------------------------------------------------------ rules

class RuleBook:
    """The latest city document and county overrides, and the rules in force per county."""

    def __init__(self, rows: list[asyncpg.Record]) -> None:
        self.latest = {r["scope"]: (r["version"], r["body"]) for r in rows}
        self.key = tuple(sorted((s, v) for s, (v, _) in self.latest.items()))
        self._cache: dict[str, tuple[Rules, str]] = {}

    def for_county(self, county: str) -> tuple[Rules, str]:
        hit = self._cache.get(county)
        if hit is None:
            city_version, city = self.latest["city"]
            county_version, override = self.latest.get(county, (None, None))
            hit = self._cache[county] = effective(city, city_version, override, county, county_version)
        return hit


_BOOK: RuleBook | None = None


async def rule_book(conn: asyncpg.Connection) -> RuleBook:
    """The rules in force (one small query: the latest version of each scope; the parsed documents
    are kept while no version changes)."""
    global _BOOK
    versions = await conn.fetch("SELECT scope, max(version) AS version FROM rules GROUP BY scope")
    key = tuple(sorted((r["scope"], r["version"]) for r in versions))
    if _BOOK is None or _BOOK.key != key:
        rows = await conn.fetch("SELECT DISTINCT ON (scope) scope, version, body FROM rules "
                                "ORDER BY scope, version DESC")
        _BOOK = RuleBook(rows)
    return _BOOK


async def latest_rules(conn: asyncpg.Connection, scope: str) -> asyncpg.Record | None:
    """A scope's latest rules version, or None."""
    return await conn.fetchrow("SELECT scope, version, body, created_by, created_at, note FROM rules "
                               "WHERE scope = $1 ORDER BY version DESC LIMIT 1", scope)


async def latest_rules_per_scope(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The latest rules version of every scope (the city and each county override)."""
    return await conn.fetch("SELECT DISTINCT ON (scope) scope, version, body, created_by, created_at, note "
                            "FROM rules ORDER BY scope, version DESC")


async def rules_history(conn: asyncpg.Connection, scope: str) -> list[asyncpg.Record]:
    """Every rules version of a scope, newest first."""
    return await conn.fetch("SELECT scope, version, body, created_by, created_at, note FROM rules "
                            "WHERE scope = $1 ORDER BY version DESC", scope)


async def lock_rules(conn: asyncpg.Connection, scope: str) -> None:
    """Serialise writers of one scope's rules until the caller's transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"rules:{scope}")


async def insert_rules(conn: asyncpg.Connection, scope: str, version: int, body: dict, created_by: str,
                       note: str | None) -> asyncpg.Record:
    """Store a new rules version of a scope."""
    return await conn.fetchrow("INSERT INTO rules (scope, version, body, created_by, note) VALUES ($1,$2,$3,$4,$5) "
                               "RETURNING scope, version, body, created_by, created_at, note",
                               scope, version, body, created_by, note)


# ------------------------------------------------------------------ silences

async def silences(conn: asyncpg.Connection, county: str | None, all: bool) -> list[asyncpg.Record]:
    """Silences of a county (None: every county), active only unless `all`, newest first."""
    return await conn.fetch(
        "SELECT * FROM silences WHERE ($1::text IS NULL OR county_code = $1) AND "
        "($2 OR (revoked_at IS NULL AND expires_at > now())) ORDER BY created_at DESC LIMIT 500", county, all)


async def insert_silence(conn: asyncpg.Connection, silence_id: uuid.UUID, county_code: str, cause: str | None,
                         resident_id: uuid.UUID | None, device_id: str | None, owner: str | None, reason: str | None,
                         starts_at: datetime, expires_at: datetime, created_by: str) -> asyncpg.Record:
    """Store a new silence."""
    return await conn.fetchrow(
        "INSERT INTO silences (id, county_code, cause, resident_id, device_id, owner, reason, starts_at, expires_at, "
        "created_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING *",
        silence_id, county_code, cause, resident_id, device_id, owner, reason, starts_at, expires_at, created_by)


async def silence_county(conn: asyncpg.Connection, silence_id: uuid.UUID) -> asyncpg.Record | None:
    """The county of a silence, or None."""
    return await conn.fetchrow("SELECT county_code FROM silences WHERE id = $1", silence_id)


async def revoke_silence(conn: asyncpg.Connection, silence_id: uuid.UUID, revoked_by: str) -> asyncpg.Record:
    """End a silence now (the first revocation's time and actor are kept)."""
    return await conn.fetchrow("UPDATE silences SET revoked_at = coalesce(revoked_at, now()), "
                               "revoked_by = coalesce(revoked_by, $2) WHERE id = $1 RETURNING *",
                               silence_id, revoked_by)


# ------------------------------------------------------------------ webhook subscriptions

async def insert_subscription(conn: asyncpg.Connection, subscription_id: uuid.UUID, url: str,
                              county_code: str | None, severities: list[str], secret: str,
                              created_by: str) -> asyncpg.Record:
    """Store a new webhook subscription."""
    return await conn.fetchrow(
        "INSERT INTO subscriptions (id, url, county_code, severities, secret, created_by) "
        "VALUES ($1,$2,$3,$4,$5,$6) RETURNING *", subscription_id, url, county_code, severities, secret, created_by)


async def subscriptions(conn: asyncpg.Connection, county: str | None) -> list[asyncpg.Record]:
    """Subscriptions of a county (None: all), oldest first."""
    return await conn.fetch("SELECT * FROM subscriptions WHERE ($1::text IS NULL OR county_code = $1) "
                            "ORDER BY created_at", county)


async def subscription(conn: asyncpg.Connection, subscription_id: uuid.UUID) -> asyncpg.Record | None:
    """One subscription, or None."""
    return await conn.fetchrow("SELECT * FROM subscriptions WHERE id = $1", subscription_id)


async def delivery_counts(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict:
    """{subscription id: {pending, delivered, dead}} for these subscriptions."""
    rows = await conn.fetch("SELECT subscription_id, status, count(*) AS n FROM deliveries "
                            "WHERE subscription_id = ANY($1::uuid[]) GROUP BY 1, 2", ids)
    out: dict = {i: {"pending": 0, "delivered": 0, "dead": 0} for i in ids}
    for r in rows:
        out[r["subscription_id"]][r["status"]] = r["n"]
    return out


async def deliveries(conn: asyncpg.Connection, subscription_id: uuid.UUID, status: str | None,
                     limit: int) -> list[asyncpg.Record]:
    """A subscription's deliveries (of one status, if given), newest first."""
    return await conn.fetch(
        "SELECT id, msg_id, status, attempts, next_attempt_at, last_status, last_error, created_at, delivered_at "
        "FROM deliveries WHERE subscription_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY id DESC LIMIT $3",
        subscription_id, status, limit)


async def stop_subscription(conn: asyncpg.Connection, subscription_id: uuid.UUID) -> asyncpg.Record:
    """Deactivate a subscription and mark its pending deliveries dead, in the caller's transaction."""
    row = await conn.fetchrow("UPDATE subscriptions SET active = false WHERE id = $1 RETURNING *", subscription_id)
    await conn.execute("UPDATE deliveries SET status = 'dead', last_error = 'subscription stopped' "
                       "WHERE subscription_id = $1 AND status = 'pending'", subscription_id)
    return row


ALERT_COLUMNS = """a.id, a.county_code, a.resident_id, a.device_id, a.cause, a.severity, a.status, a.level,
a.count, a.first_seen_at, a.last_seen_at, a.raised_at, a.acknowledged_at, a.acknowledged_by, a.dispatched_at,
a.dispatch, a.resolved_at, a.resolved_by, a.resolution, a.resolution_note, a.escalate_at, a.escalated_at,
a.silence_id, a.rule_version, a.incident_id, a.details,
r.name AS resident_name, r.emergency_contact, r.township, r.village, r.living_arrangement,
c.contact_name, c.contact_phone, c.contact_relation"""

# The first emergency contact in the calling order comes with each alert (its phone masked when shown).
CONTACT_JOIN = ("LEFT JOIN LATERAL (SELECT name AS contact_name, phone AS contact_phone, relation AS contact_relation FROM contacts "
              "WHERE contacts.resident_id = a.resident_id ORDER BY position LIMIT 1) c ON true")
ALERT_FROM = f"alerts a LEFT JOIN residents r ON r.resident_id = a.resident_id {CONTACT_JOIN}"


# ------------------------------------------------------------------ residents: contacts, geofences, audit

async def resident(conn: asyncpg.Connection, resident_id: uuid.UUID) -> asyncpg.Record | None:
    """The projection's row of a resident, or None."""
    return await conn.fetchrow("SELECT resident_id, county_code, name, village, categories, home_lat, home_lon "
                               "FROM residents WHERE resident_id = $1", resident_id)


async def contacts(conn: asyncpg.Connection, resident_id: uuid.UUID) -> list[asyncpg.Record]:
    """A resident's emergency contacts in calling order."""
    return await conn.fetch("SELECT position, name, relation, phone, updated_by, updated_at FROM contacts "
                            "WHERE resident_id = $1 ORDER BY position", resident_id)


async def replace_contacts(conn: asyncpg.Connection, resident_id: uuid.UUID, county_code: str, entries: list[dict],
                           updated_by: str) -> None:
    """The resident's contacts become `entries`, in that calling order (position 1 first)."""
    await conn.execute("DELETE FROM contacts WHERE resident_id = $1", resident_id)
    await conn.executemany(
        "INSERT INTO contacts (resident_id, position, county_code, name, relation, phone, updated_by) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(resident_id, n, county_code, e["name"], e.get("relation"), e["phone"], updated_by)
         for n, e in enumerate(entries, 1)])


async def write_audit(conn: asyncpg.Connection, *, actor: str, role: str, county_code: str | None, action: str,
                      resident_id: uuid.UUID | None, fields: list[str], reason: str, trace_id: str | None) -> None:
    """One row per personal-data access (the table only takes inserts)."""
    await conn.execute("INSERT INTO audit_log (actor, role, county_code, action, resident_id, fields, reason, "
                       "trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                       actor, role, county_code, action, resident_id, fields, reason, trace_id)


async def audit_entries(conn: asyncpg.Connection, resident_id: uuid.UUID | None, limit: int) -> list[asyncpg.Record]:
    """The audit log, newest first (of one resident, if given)."""
    return await conn.fetch("SELECT id, at, actor, role, county_code, action, resident_id, fields, reason, trace_id "
                            "FROM audit_log WHERE ($1::uuid IS NULL OR resident_id = $1) ORDER BY id DESC LIMIT $2",
                            resident_id, limit)


async def geofence(conn: asyncpg.Connection, resident_id: uuid.UUID) -> asyncpg.Record | None:
    """The zone set for a resident through the API, or None."""
    return await conn.fetchrow("SELECT * FROM geofences WHERE resident_id = $1", resident_id)


async def geofence_state(conn: asyncpg.Connection, resident_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT state, streak, distance_m, last_fix_at, zone_source FROM geofence_states "
                               "WHERE resident_id = $1", resident_id)


async def set_geofence(conn: asyncpg.Connection, resident_id: uuid.UUID, county_code: str, lat: float, lon: float,
                       radius_m: float, device_id: str | None, note: str | None, set_by: str) -> None:
    """Set (or replace) a resident's zone; the zone state starts again from inside."""
    await conn.execute(
        "INSERT INTO geofences (resident_id, county_code, lat, lon, radius_m, device_id, note, set_by) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (resident_id) DO UPDATE SET county_code = EXCLUDED.county_code, "
        "lat = EXCLUDED.lat, lon = EXCLUDED.lon, radius_m = EXCLUDED.radius_m, device_id = EXCLUDED.device_id, "
        "note = EXCLUDED.note, set_by = EXCLUDED.set_by, set_at = now()",
        resident_id, county_code, lat, lon, radius_m, device_id, note, set_by)
    await conn.execute("DELETE FROM geofence_states WHERE resident_id = $1", resident_id)


async def clear_geofence(conn: asyncpg.Connection, resident_id: uuid.UUID) -> bool:
    """Remove a resident's configured zone (a home zone may apply again); False if there was none."""
    status = await conn.execute("DELETE FROM geofences WHERE resident_id = $1", resident_id)
    await conn.execute("DELETE FROM geofence_states WHERE resident_id = $1", resident_id)
    return status != "DELETE 0"


async def notifications(conn: asyncpg.Connection, alert_id: uuid.UUID) -> list[asyncpg.Record]:
    """An alert's emergency-contact notifications, in the order they were started."""
    return await conn.fetch("SELECT id, position, name, phone, trigger, status, attempts, next_attempt_at, last_error, "
                            "created_at, sent_at FROM notifications WHERE alert_id = $1 ORDER BY id", alert_id)


async def alert_county(conn: asyncpg.Connection, alert_id: uuid.UUID) -> asyncpg.Record | None:
    """The county of an alert, or None."""
    return await conn.fetchrow("SELECT county_code FROM alerts WHERE id = $1", alert_id)
