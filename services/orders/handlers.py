"""The orders service's use cases: one function per command or consumed event, given an asyncpg
connection inside the caller's transaction; every change writes its event to the outbox in that
same transaction (STYLE #1, #11). The rules they apply live in domain/."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import asyncpg
from pydantic import BaseModel

from services.orders import store
from services.orders.domain import evv
from services.orders.domain.catalog import QUALIFICATIONS, certificates_allow, load_menu
from services.orders.domain.errors import (
    InvalidOrder, ItemNotOffered, MonthClosed, NotEligible, NotQualified, NotYourOrder, OrderNotFound, OverCapacity,
    PartyNotFound, ResidentNotServable, ResidentUnknown, StaleVersion, TransitionRefused,
)
from services.orders.domain.funding import PUBLIC_SOURCES, SOURCES, Line, split_order
from services.orders.domain.lifecycle import OPEN, RELEASING, next_state
from services.orders.domain.policies import (
    CITY, DEFAULT_CITY_POLICY, PolicyVersion, benefit_document, benefits_for, parse_benefits, parse_budgets, resolve,
)
from services.orders.domain.residents import DECEASED, RESIDENT_TYPES, apply_resident_event
from services.orders.domain.rules import RuleInvalid, unmet
from services.orders.domain.schedule import Timers, due_step, first_due
from services.orders.settings import OrdersSettings
from shared.auth import Principal, Role
from shared.events import make_event
from shared.events.envelope import CloudEvent
from shared.idcard import mask_phone
from shared.idempotency import StoredResponse, stored_answer
from shared.messaging.outbox import add_events, outbox_row
from shared.problems import BadRequest, Forbidden, Unprocessable
from shared.regions import load_counties

SOURCE = "orders"
MENU = {m.code: m for m in load_menu()}
# The city runs on China Standard Time: service days and statement months are local.
CST = timezone(timedelta(hours=8))
EPOCH = date(2020, 1, 1)


def local_day(ts: datetime) -> date:
    return ts.astimezone(CST).date()


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def parse_month(value: str | None, field: str = "month") -> str:
    if value is None:
        return month_of(datetime.now(CST).date())
    if len(value) != 7 or value[4] != "-" or not (value[:4] + value[5:]).isdigit() or not 1 <= int(value[5:]) <= 12:
        raise BadRequest("month is YYYY-MM, e.g. 2026-12.", field=field)
    return value


def known_county(code: str, field: str = "county_code") -> str:
    if code not in load_counties():
        raise Unprocessable(f"{code!r} is not a county of the task list.", field=field)
    return code


def etag(row) -> str:
    return f'"{row["id"]}.{row["version"]}"'


def check_if_match(if_match: str | None, row) -> None:
    """An If-Match, when sent, must name the version the caller read (412 otherwise)."""
    if if_match is None:
        return
    tag = if_match.strip().removeprefix("W/").strip('"')
    if tag != f'{row["id"]}.{row["version"]}':
        raise StaleVersion(f"The record changed since you read it (now version {row['version']}); GET it again.",
                           field="If-Match", current_version=row["version"])


# ================================================================ residents projection


def _resident_id(event: CloudEvent, data: BaseModel) -> str:
    resident = getattr(data, "resident", None)
    return str(resident.resident_id if resident is not None else getattr(data, "resident_id", event.subject))


async def fold_residents(conn: asyncpg.Connection, events: list[tuple[CloudEvent, BaseModel]]) -> None:
    """Apply a batch of the registry's resident events to the projection in one read and one write."""
    ids = [_resident_id(e, d) for e, d in events]
    states = await store.load_residents(conn, sorted(set(ids)))
    touched = {}
    deaths = []
    for (event, data), rid in zip(events, ids):
        if event.type not in RESIDENT_TYPES:
            continue
        new = apply_resident_event(states.get(rid), event.type, data)
        if new is None:
            continue
        states[rid] = touched[rid] = new
        if event.type == DECEASED:
            deaths.append((rid, data.date_of_death))
    await store.save_residents(conn, list(touched.values()))
    await store.flag_orders_after_death(conn, deaths)


# ================================================================ reference data


async def seed_reference(conn: asyncpg.Connection) -> None:
    """The menu from the reference file (its terms are the city's, so a restart brings them back in
    line) and the city's first policy when there is none."""
    menu = load_menu()
    await conn.executemany(
        "INSERT INTO catalog_items (code, name_zh, name_en, category, unit, base_price_fen, minutes_per_unit, "
        "qualification, eligibility) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (code) DO UPDATE SET "
        "name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en, category = EXCLUDED.category, unit = EXCLUDED.unit, "
        "base_price_fen = EXCLUDED.base_price_fen, minutes_per_unit = EXCLUDED.minutes_per_unit, "
        "qualification = EXCLUDED.qualification, eligibility = EXCLUDED.eligibility",
        [(m.code, m.name_zh, m.name_en, m.category, m.unit, m.base_price_fen, m.minutes_per_unit, m.qualification,
          m.eligibility) for m in menu])
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('orders:policy:city'))")
    if not await conn.fetchval("SELECT 1 FROM policies WHERE scope = 'city' LIMIT 1"):
        await conn.execute(
            "INSERT INTO policies (scope, version, effective_from, benefits, budgets, note, created_by) "
            "VALUES ('city', 1, $1, $2, $3, $4, 'seed')", EPOCH, DEFAULT_CITY_POLICY["benefits"],
            DEFAULT_CITY_POLICY["budgets"], "默认政策 (seeded on first start)")


def catalog_item_view(r) -> dict:
    return {"code": r["code"], "name_zh": r["name_zh"], "name_en": r["name_en"], "category": r["category"],
            "unit": r["unit"], "base_price_fen": r["base_price_fen"], "minutes_per_unit": r["minutes_per_unit"],
            "qualification": r["qualification"], "eligibility": r["eligibility"]}


async def catalog(conn: asyncpg.Connection, county: str) -> list[dict]:
    """The menu for a county: every item with the county's providers offering it and their prices."""
    rows = await conn.fetch(
        """SELECT c.*, coalesce(jsonb_agg(jsonb_build_object('provider_id', p.id, 'name', p.name,
                  'provider_type', p.provider_type, 'price_fen', pi.price_fen, 'daily_capacity', pi.daily_capacity)
                  ORDER BY pi.price_fen, p.id) FILTER (WHERE p.id IS NOT NULL), '[]'::jsonb) AS offers
           FROM catalog_items c
           LEFT JOIN provider_items pi ON pi.service_code = c.code
           LEFT JOIN providers p ON p.id = pi.provider_id AND p.county_code = $1 AND p.active
           GROUP BY c.code ORDER BY c.category, c.code""", county)
    return [{**catalog_item_view(r), "providers": r["offers"], "orderable": bool(r["offers"])} for r in rows]


# ================================================================ providers and caregivers

PROVIDER_TYPES = ("street_centre", "daycare_centre", "township_home", "institution", "company")


def require_manager(principal: Principal, county: str) -> None:
    """Providers and caregivers are managed by the city and by the county they work in."""
    if principal.role not in (Role.CITY, Role.COUNTY):
        raise Forbidden(f"The {principal.role.value} role may not manage providers or caregivers.")
    principal.require_county(county)


async def _validate_offers(conn: asyncpg.Connection, items: list[dict]) -> None:
    known = await store.catalog_by_code(conn)
    seen = set()
    for i, item in enumerate(items):
        code = item["service_code"]
        if code not in known:
            raise Unprocessable(f"{code!r} is not on the menu.", field=f"items[{i}].service_code")
        if code in seen:
            raise Unprocessable(f"{code!r} is listed twice.", field=f"items[{i}].service_code")
        seen.add(code)


def provider_view(row, items: list) -> dict:
    return {"id": row["id"], "name": row["name"], "provider_type": row["provider_type"],
            "county_code": row["county_code"], "active": row["active"], "version": row["version"],
            "items": [{"service_code": i["service_code"], "price_fen": i["price_fen"],
                       "daily_capacity": i["daily_capacity"]} for i in items],
            "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}


async def provider_with_items(conn: asyncpg.Connection, provider_id: str):
    row = await conn.fetchrow("SELECT * FROM providers WHERE id = $1", provider_id)
    if row is None:
        raise PartyNotFound("No provider has this id.", field="provider_id")
    items = await conn.fetch("SELECT * FROM provider_items WHERE provider_id = $1 ORDER BY service_code", provider_id)
    return row, items


async def create_provider(conn: asyncpg.Connection, principal: Principal, body: dict) -> tuple:
    county = known_county(body["county_code"])
    require_manager(principal, county)
    await _validate_offers(conn, body["items"])
    pid = body.get("id") or f"prov-{county}-{uuid.uuid4().hex[:8]}"
    row = await conn.fetchrow(
        "INSERT INTO providers (id, name, provider_type, county_code) VALUES ($1,$2,$3,$4) "
        "ON CONFLICT (id) DO NOTHING RETURNING *", pid, body["name"], body["provider_type"], county)
    if row is None:
        raise TransitionRefused("A provider with this id exists.", field="id")
    await _save_offers(conn, pid, body["items"])
    return await provider_with_items(conn, pid)


async def _save_offers(conn: asyncpg.Connection, provider_id: str, items: list[dict]) -> None:
    await conn.execute("DELETE FROM provider_items WHERE provider_id = $1", provider_id)
    await conn.executemany(
        "INSERT INTO provider_items (provider_id, service_code, price_fen, daily_capacity) VALUES ($1,$2,$3,$4)",
        [(provider_id, i["service_code"], i["price_fen"], i["daily_capacity"]) for i in items])


async def update_provider(conn: asyncpg.Connection, principal: Principal, provider_id: str, if_match: str,
                          changes: dict) -> tuple:
    row = await conn.fetchrow("SELECT * FROM providers WHERE id = $1 FOR UPDATE", provider_id)
    if row is None:
        raise PartyNotFound("No provider has this id.", field="provider_id")
    require_manager(principal, row["county_code"])
    check_if_match(if_match, row)
    if "items" in changes:
        await _validate_offers(conn, changes["items"])
        await _save_offers(conn, provider_id, changes.pop("items"))
    fields = {k: v for k, v in changes.items() if k in ("name", "provider_type", "active")}
    await conn.execute(
        "UPDATE providers SET name = coalesce($2, name), provider_type = coalesce($3, provider_type), "
        "active = coalesce($4, active), version = version + 1, updated_at = now() WHERE id = $1",
        provider_id, fields.get("name"), fields.get("provider_type"), fields.get("active"))
    return await provider_with_items(conn, provider_id)


def may_read_provider(principal: Principal, county: str, provider_id: str) -> bool:
    if principal.role == Role.PROVIDER:
        return principal.provider_id == provider_id
    return principal.role in (Role.CITY, Role.COUNTY, Role.VIEWER, Role.CAREGIVER) and (
        principal.role != Role.COUNTY or principal.county == county)


async def list_providers(conn: asyncpg.Connection, principal: Principal, county: str | None) -> list[dict]:
    if principal.role == Role.COUNTY:
        county = county or principal.county
        principal.require_county(county)
    rows = await conn.fetch(
        "SELECT p.*, coalesce(jsonb_agg(jsonb_build_object('service_code', i.service_code, 'price_fen', i.price_fen, "
        "'daily_capacity', i.daily_capacity) ORDER BY i.service_code) FILTER (WHERE i.service_code IS NOT NULL), "
        "'[]'::jsonb) AS items FROM providers p LEFT JOIN provider_items i ON i.provider_id = p.id "
        "WHERE ($1::text IS NULL OR p.county_code = $1) AND ($2::text IS NULL OR p.id = $2) "
        "GROUP BY p.id ORDER BY p.id",
        county, principal.provider_id if principal.role == Role.PROVIDER else None)
    return [provider_view(r, r["items"]) for r in rows]


def caregiver_view(row, certificates: list, principal: Principal, county: str) -> dict:
    clear = principal.role == Role.CITY or (principal.role == Role.COUNTY and principal.county == county) or (
        principal.role == Role.CAREGIVER and principal.caregiver_id == row["id"])
    return {"id": row["id"], "provider_id": row["provider_id"], "name": row["name"],
            "phone": row["phone"] if clear else mask_phone(row["phone"]), "service_area": list(row["service_area"]),
            "active": row["active"], "version": row["version"], "county_code": county,
            "certificates": [{"kind": c["kind"], "level": c["level"], "number": c["number"],
                              "expires_on": c["expires_on"].isoformat() if c["expires_on"] else None,
                              "valid": c["expires_on"] is None or c["expires_on"] >= datetime.now(CST).date()}
                             for c in certificates]}


async def caregiver_with_certificates(conn: asyncpg.Connection, caregiver_id: str, *, for_update: bool = False):
    lock = " FOR UPDATE OF c" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT c.*, p.county_code FROM caregivers c JOIN providers p ON p.id = c.provider_id WHERE c.id = $1{lock}",
        caregiver_id)
    if row is None:
        raise PartyNotFound("No caregiver has this id.", field="caregiver_id")
    certs = await conn.fetch("SELECT * FROM certificates WHERE caregiver_id = $1 ORDER BY id", caregiver_id)
    return row, certs


def _check_certificates(certificates: list[dict]) -> None:
    for i, c in enumerate(certificates):
        if c["kind"] not in QUALIFICATIONS:
            raise Unprocessable(f"kind is one of {', '.join(QUALIFICATIONS)}.", field=f"certificates[{i}].kind")


async def _save_certificates(conn: asyncpg.Connection, caregiver_id: str, certificates: list[dict]) -> None:
    await conn.execute("DELETE FROM certificates WHERE caregiver_id = $1", caregiver_id)
    await conn.executemany(
        "INSERT INTO certificates (caregiver_id, kind, level, number, expires_on) VALUES ($1,$2,$3,$4,$5)",
        [(caregiver_id, c["kind"], c.get("level"), c["number"], c.get("expires_on")) for c in certificates])


async def create_caregiver(conn: asyncpg.Connection, principal: Principal, body: dict) -> tuple:
    provider = await conn.fetchrow("SELECT * FROM providers WHERE id = $1", body["provider_id"])
    if provider is None:
        raise PartyNotFound("No provider has this id.", field="provider_id")
    require_manager(principal, provider["county_code"])
    _check_certificates(body["certificates"])
    cid = body.get("id") or f"cg-{provider['county_code']}-{uuid.uuid4().hex[:8]}"
    row = await conn.fetchrow(
        "INSERT INTO caregivers (id, provider_id, name, phone, service_area) VALUES ($1,$2,$3,$4,$5) "
        "ON CONFLICT (id) DO NOTHING RETURNING id", cid, provider["id"], body["name"], body.get("phone"),
        body["service_area"])
    if row is None:
        raise TransitionRefused("A caregiver with this id exists.", field="id")
    await _save_certificates(conn, cid, body["certificates"])
    return await caregiver_with_certificates(conn, cid)


async def update_caregiver(conn: asyncpg.Connection, principal: Principal, caregiver_id: str, if_match: str,
                           changes: dict) -> tuple:
    row, _ = await caregiver_with_certificates(conn, caregiver_id, for_update=True)
    require_manager(principal, row["county_code"])
    check_if_match(if_match, row)
    if "certificates" in changes:
        _check_certificates(changes["certificates"])
        await _save_certificates(conn, caregiver_id, changes.pop("certificates"))
    await conn.execute(
        "UPDATE caregivers SET name = coalesce($2, name), phone = coalesce($3, phone), "
        "service_area = coalesce($4, service_area), active = coalesce($5, active), version = version + 1, "
        "updated_at = now() WHERE id = $1", caregiver_id, changes.get("name"), changes.get("phone"),
        changes.get("service_area"), changes.get("active"))
    return await caregiver_with_certificates(conn, caregiver_id)


def may_read_caregiver(principal: Principal, row) -> bool:
    return (principal.role == Role.CITY or (principal.role == Role.COUNTY and principal.county == row["county_code"])
            or (principal.role == Role.PROVIDER and principal.provider_id == row["provider_id"])
            or (principal.role == Role.CAREGIVER and principal.caregiver_id == row["id"]))


async def list_caregivers(conn: asyncpg.Connection, principal: Principal, provider: str | None,
                          county: str | None) -> list[dict]:
    if principal.role == Role.PROVIDER:
        provider = principal.provider_id
    elif principal.role == Role.COUNTY:
        county = principal.county
    elif principal.role != Role.CITY:
        raise Forbidden(f"The {principal.role.value} role may not list caregivers.")
    rows = await conn.fetch(
        "SELECT c.*, p.county_code FROM caregivers c JOIN providers p ON p.id = c.provider_id "
        "WHERE ($1::text IS NULL OR c.provider_id = $1) AND ($2::text IS NULL OR p.county_code = $2) ORDER BY c.id",
        provider, county)
    certs = await conn.fetch("SELECT * FROM certificates WHERE caregiver_id = ANY($1::text[]) ORDER BY id",
                             [r["id"] for r in rows])
    by_caregiver: dict[str, list] = {}
    for c in certs:
        by_caregiver.setdefault(c["caregiver_id"], []).append(c)
    return [caregiver_view(r, by_caregiver.get(r["id"], []), principal, r["county_code"]) for r in rows]


# ================================================================ policies, entitlements, budgets


def policy_version(r) -> PolicyVersion:
    return PolicyVersion(r["scope"], r["version"], r["effective_from"], r["effective_to"],
                         parse_benefits(r["benefits"]) if r["benefits"] is not None else None,
                         parse_budgets(r["budgets"]) if r["budgets"] is not None else None)


def policy_view(r) -> dict:
    return {"scope": r["scope"], "version": r["version"], "ref": f"{r['scope']}@v{r['version']}",
            "effective_from": r["effective_from"].isoformat(),
            "effective_to": r["effective_to"].isoformat() if r["effective_to"] else None,
            "benefits": r["benefits"], "budgets": r["budgets"], "note": r["note"], "created_by": r["created_by"],
            "created_at": r["created_at"].isoformat()}


# Policy versions are never updated (a change is a new version), so a parsed one is kept. The key
# (scope, version, row id, creation time) keeps two databases served by one process apart: a fresh
# database's first county override has the same scope, version and id as another's (found when
# the lifecycle benchmark and the orders tests ran in one process).
_POLICIES: dict[tuple[str, ...], PolicyVersion] = {}


async def cached_policy_versions(conn: asyncpg.Connection, keys: list[list[str]]) -> list[PolicyVersion]:
    missing = [k for k in map(tuple, keys) if k not in _POLICIES]
    if missing:
        rows = {str(r["id"]): r for r in await conn.fetch("SELECT * FROM policies WHERE id = ANY($1::bigint[])",
                                                          [int(k[2]) for k in missing])}
        for k in missing:
            _POLICIES[k] = policy_version(rows[k[2]])
    return [_POLICIES[tuple(k)] for k in keys]


async def policy_versions(conn: asyncpg.Connection, county: str) -> list[PolicyVersion]:
    return [policy_version(r) for r in await store.policy_rows(conn, [CITY, county])]


async def create_policy(conn: asyncpg.Connection, principal: Principal, body: dict):
    """A new version of the city's policy or of one county's override (city only)."""
    if principal.role != Role.CITY:
        raise Forbidden("Only the city edits subsidy policies.")
    scope = body["scope"]
    if scope != CITY:
        known_county(scope, "scope")
    try:
        benefits = parse_benefits(body["benefits"]) if body.get("benefits") is not None else None
        if body.get("budgets") is not None:
            parse_budgets(body["budgets"])
    except RuleInvalid as exc:
        raise Unprocessable(str(exc), field=str(exc).split(" ", 1)[0]) from None
    if scope == CITY and (benefits is None or body.get("budgets") is None):
        raise Unprocessable("The city's policy sets both benefits and budgets.",
                            field="benefits" if benefits is None else "budgets")
    if body.get("effective_to") is not None and body["effective_to"] < body["effective_from"]:
        raise Unprocessable("effective_to is before effective_from.", field="effective_to")
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"orders:policy:{scope}")
    version = await conn.fetchval("SELECT coalesce(max(version), 0) + 1 FROM policies WHERE scope = $1", scope)
    return await conn.fetchrow(
        "INSERT INTO policies (scope, version, effective_from, effective_to, benefits, budgets, note, created_by) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING *", scope, version, body["effective_from"],
        body.get("effective_to"), [benefit_document(b) for b in benefits] if benefits is not None else None,
        body.get("budgets"), body.get("note"), principal.subject)


def require_resident_reader(principal: Principal, county: str) -> None:
    if principal.role not in (Role.CITY, Role.COUNTY):
        raise Forbidden(f"The {principal.role.value} role may not see residents' entitlements.")
    if not principal.may_see_county(county):
        raise Forbidden("This resident belongs to another county.", field="resident_id")


async def entitlement(conn: asyncpg.Connection, principal: Principal, resident_id: uuid.UUID, month: str) -> dict:
    """A resident's benefits this month: quota, used and left per benefit, from the policy in force."""
    resident = await store.fetch_resident(conn, resident_id)
    if resident is None:
        raise ResidentUnknown("Orders knows no resident with this id (yet).", field="resident_id")
    require_resident_reader(principal, resident.county_code)
    first = date(int(month[:4]), int(month[5:]), 1)
    today = datetime.now(CST).date()
    day = today if month_of(today) == month else first
    policy = resolve(await policy_versions(conn, resident.county_code), resident.county_code, day)
    benefits = benefits_for(policy, resident, day)
    used = {r["benefit_code"]: r["used_fen"] for r in await conn.fetch(
        "SELECT benefit_code, used_fen FROM entitlement_usage WHERE resident_id = $1 AND month = $2",
        resident_id, month)}
    out = []
    for b in benefits:
        spent = used.get(b.code, 0)
        out.append({**benefit_document(b), "quota_fen": b.monthly_cap_fen, "used_fen": spent,
                    "left_fen": max(0, b.monthly_cap_fen - spent)})
    note = None
    if resident.status != "active" or resident.date_of_death is not None:
        note = f"no subsidy: resident {resident.status}" + (
            f" on {resident.date_of_death.isoformat()}" if resident.date_of_death else "")
    elif not benefits:
        note = "no benefit of the policy in force applies: orders are paid personally"
    return {"resident_id": str(resident_id), "county_code": resident.county_code, "month": month,
            "as_of": day.isoformat(), "policy_ref": policy.ref, "benefits": out, "note": note}


async def budgets(conn: asyncpg.Connection, principal: Principal, county: str | None, month: str) -> list[dict]:
    if principal.role == Role.COUNTY:
        county = county or principal.county
        principal.require_county(county)
    elif principal.role not in (Role.CITY, Role.VIEWER):
        raise Forbidden(f"The {principal.role.value} role may not see budgets.")
    counties = [known_county(county, "county")] if county else list(load_counties())
    first = date(int(month[:4]), int(month[5:]), 1)
    spent = {(r["county_code"], r["source"]): r["spent_fen"] for r in await conn.fetch(
        "SELECT county_code, source, spent_fen FROM budget_spend WHERE month = $1 AND county_code = ANY($2::text[])",
        month, counties)}
    rows = await store.policy_rows(conn, [CITY, *counties])
    versions = [policy_version(r) for r in rows]
    out = []
    for code in counties:
        policy = resolve(versions, code, first)
        sources = []
        for s in PUBLIC_SOURCES:
            budget = policy.budgets.get(s, 0)
            used = spent.get((code, s), 0)
            sources.append({"source": s, "budget_fen": budget, "spent_fen": used, "left_fen": max(0, budget - used)})
        out.append({"county_code": code, "month": month, "policy_ref": policy.ref, "sources": sources})
    return out


# ================================================================ orders

CHANNEL_ROLES = {
    "caregiver_app": {Role.CAREGIVER},
    "provider": {Role.PROVIDER},
    "county_operator": {Role.COUNTY, Role.CITY},
    "hotline": {Role.COUNTY, Role.CITY},   # the 12345 hotline's operators work for the city or a county
}


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    resident_id: uuid.UUID
    provider_id: str
    items: list[tuple[str, int]]
    scheduled_start: datetime
    channel: str
    call_reference: str | None = None


def may_see_order(principal: Principal, row) -> bool:
    role = principal.role
    if role == Role.CITY:
        return True
    if role == Role.COUNTY:
        return row["county_code"] == principal.county
    if role == Role.PROVIDER:
        return row["provider_id"] == principal.provider_id
    if role == Role.CAREGIVER:
        return row["caregiver_id"] is not None and row["caregiver_id"] == principal.caregiver_id
    return False


def _mask_name(name: str) -> str:
    return name[:1] + "*" * max(1, len(name) - 1)


def order_view(row, principal: Principal, resident=None) -> dict:
    """The API's order. A caregiver sees the resident's name and address only while the order is
    open (SPEC §2 privacy); a resident's ID and phone numbers never reach orders at all."""
    funding = {f"{s}_fen": row[f"{s}_fen"] for s in SOURCES}
    view = {
        "id": str(row["id"]), "state": row["state"], "resident_id": str(row["resident_id"]),
        "county_code": row["county_code"], "provider_id": row["provider_id"], "caregiver_id": row["caregiver_id"],
        "channel": row["channel"], "call_reference": row["call_reference"], "items": row["items"],
        "scheduled_start": row["scheduled_start"].isoformat(), "scheduled_minutes": row["scheduled_minutes"],
        "service_day": row["service_day"].isoformat(), "price_fen": row["price_fen"], "funding": funding,
        "policy_ref": row["policy_ref"], "subsidy_notes": list(row["subsidy_notes"]), "placed_by": row["placed_by"],
        "placed_at": row["placed_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
        "version": row["version"], "late_minutes": row["late_minutes"], "flags": list(row["flags"]),
        "end_reason": row["end_reason"], "rating": row["rating"], "rating_comment": row["rating_comment"],
        "evv": {
            "status": row["evv_status"], "exceptions": list(row["evv_exceptions"]),
            "reason": row["exception_reason"], "confirmed_by": row["confirmed_by"],
            "check_in": _visit_point(row, "check_in"), "check_out": _visit_point(row, "check_out"),
            "actual_minutes": row["actual_minutes"],
        },
        "settlement_month": row["settlement_month"], "adjustment": row["adjustment"],
    }
    for key in ("accepted_at", "assigned_at", "ended_at", "confirmed_at"):
        view[key] = row[key].isoformat() if row[key] else None
    if resident is not None:
        shown = principal.role != Role.CAREGIVER or row["state"] in OPEN
        view["resident"] = {
            "name": resident.name if shown else _mask_name(resident.name),
            "township": resident.township if shown else None, "village": resident.village if shown else None,
            "home_known": resident.home_lat is not None,
        }
    return view


def _visit_point(row, prefix: str) -> dict | None:
    if row[f"{prefix}_at"] is None:
        return None
    return {"at": row[f"{prefix}_at"].isoformat(), "lat": row[f"{prefix}_lat"], "lon": row[f"{prefix}_lon"],
            "accuracy_m": row[f"{prefix}_accuracy_m"], "distance_m": row[f"{prefix}_distance_m"]}


def _order_event(row, event_type: str, data: dict) -> CloudEvent:
    base = {"order_id": str(row["id"]), "resident_id": str(row["resident_id"]), "county_code": row["county_code"]}
    return make_event(event_type, SOURCE, {**base, **{k: v for k, v in data.items() if v is not None}},
                      subject=str(row["id"]), countycode=row["county_code"])


def _check_channel(principal: Principal, cmd: PlaceOrder) -> None:
    if principal.role not in CHANNEL_ROLES[cmd.channel]:
        raise Forbidden(f"The {principal.role.value} role may not place orders through {cmd.channel}.",
                        field="channel")
    if cmd.channel == "hotline" and not (cmd.call_reference or "").strip():
        raise InvalidOrder("A hotline order names its call reference.", field="call_reference")


class BudgetContended(Exception):
    """Another order took cap or budget between this order's read and its write: place it again
    with the resident's cap rows and the county's budget rows locked from the start."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The request's Idempotency-Key, whose answer is stored in the order's own statements."""

    actor: str
    key: str
    fingerprint: str


@dataclass(slots=True)
class Checked:
    """An order that passed the checks, before pricing."""

    resident: object
    provider: dict
    day: date
    lines: list[Line]
    items: list[dict]
    minutes: int
    capacity: dict[str, int]


@dataclass(slots=True)
class Placement:
    """A priced order and what it takes: the row as placed, the resident's caps (benefit, fen,
    monthly cap), the county's budget (source, fen, budget) and the provider's capacity (service,
    units, daily capacity), each in key order, and the outbox row of its event."""

    order: dict
    caps: list[tuple[str, int, int]]
    spend: list[tuple[str, int, int]]
    load: list[tuple[str, int, int]]
    outbox: tuple


def check_order(principal: Principal, cmd: PlaceOrder, cfg: OrdersSettings, facts, now: datetime) -> Checked:
    """Everything that can refuse an order before anything is taken, from `store.order_facts`' row."""
    if facts["resident_id"] is None:
        raise ResidentUnknown("Orders knows no resident with this id (it learns them from the registry's events; "
                              "a resident registered a moment ago may take a second to arrive).", field="resident_id")
    resident = store.facts_from_row(facts)
    if principal.role == Role.COUNTY and resident.county_code != principal.county:
        raise Forbidden("This resident belongs to another county.", field="resident_id")
    if resident.status == "deceased" or resident.date_of_death is not None:
        raise ResidentNotServable(
            "The resident has died" + (f" ({resident.date_of_death.isoformat()})" if resident.date_of_death else "")
            + "; no orders are placed for them.", field="resident_id", resident_status="deceased")
    if resident.status == "transferred":
        raise ResidentNotServable("The resident has moved out of the city.", field="resident_id",
                                  resident_status="transferred")
    start = cmd.scheduled_start
    if start <= now:
        raise InvalidOrder("scheduled_start is in the past.", field="scheduled_start")
    if start > now + timedelta(days=cfg.max_days_ahead):
        raise InvalidOrder(f"scheduled_start is more than {cfg.max_days_ahead} days ahead.", field="scheduled_start")
    day = local_day(start)
    provider = facts["provider"]
    if provider is None:
        raise PartyNotFound("No provider has this id.", field="provider_id")
    if principal.role == Role.PROVIDER and principal.provider_id != provider["id"]:
        raise Forbidden("A provider places orders for itself only.", field="provider_id")
    if principal.role == Role.CAREGIVER and facts["caregiver_provider"] != provider["id"]:
        raise Forbidden("A caregiver places orders for their own provider only.", field="provider_id")
    if not provider["active"]:
        raise ItemNotOffered("This provider takes no orders (inactive).", field="provider_id")
    if provider["county_code"] != resident.county_code:
        raise ItemNotOffered(f"This provider serves county {provider['county_code']}; the resident lives in "
                             f"{resident.county_code}.", field="provider_id")
    offers = facts["offers"] or {}
    lines: list[Line] = []
    items: list[dict] = []
    capacity: dict[str, int] = {}
    minutes = 0
    for i, (code, quantity) in enumerate(cmd.items):
        item = MENU.get(code)  # the catalog table holds exactly these terms (seed_reference)
        if item is None:
            raise InvalidOrder(f"{code!r} is not on the menu.", field=f"items[{i}].service_code")
        if code in capacity:
            raise InvalidOrder(f"{code!r} is listed twice; order a larger quantity.", field=f"items[{i}].service_code")
        offer = offers.get(code)
        if offer is None:
            raise ItemNotOffered(f"This provider does not offer {code}.", field=f"items[{i}].service_code")
        price, capacity[code] = offer
        reason = unmet(item.eligibility, resident, day)
        if reason is not None:
            raise NotEligible(f"The resident may not order {code}: {reason}.", field=f"items[{i}].service_code")
        lines.append(Line(code, quantity, price))
        items.append({"service_code": code, "name_zh": item.name_zh, "unit": item.unit, "quantity": quantity,
                      "unit_price_fen": price, "price_fen": quantity * price, "qualification": item.qualification})
        minutes += quantity * item.minutes_per_unit
    for i, line in enumerate(lines):
        if line.quantity > capacity[line.service_code]:
            raise over_capacity(line, capacity[line.service_code], day, i)
    return Checked(resident, provider, day, lines, items, minutes, capacity)


def over_capacity(line: Line, capacity: int, day: date, i: int) -> OverCapacity:
    return OverCapacity(f"The provider's capacity for {line.service_code} on {day.isoformat()} "
                        f"({capacity} a day) is taken.", field=f"items[{i}].quantity")


def price_order(principal: Principal, cmd: PlaceOrder, cfg: OrdersSettings, checked: Checked, policy,
                benefits: list, used: dict[str, int], spent: dict[str, int], now: datetime) -> Placement:
    """Split the order against what is left of the caps and budgets (`used`, `spent`: this month's,
    as read) and build its row and event: pure, nothing is written."""
    resident, month = checked.resident, month_of(checked.day)
    cap_left = {b.code: b.monthly_cap_fen - used.get(b.code, 0) for b in benefits}
    sources = sorted({b.source for b in benefits})
    budget_left = {s: policy.budgets.get(s, 0) - spent.get(s, 0) for s in sources}
    split = split_order(checked.lines, benefits, cap_left, budget_left)
    notes = list(split.notes) or ([] if benefits else ["no benefit applies: paid personally"])
    for item, line_split in zip(checked.items, split.lines):
        item["funding"] = {f"{s}_fen": line_split.fen[s] for s in SOURCES}
    caps = {b.code: b.monthly_cap_fen for b in benefits}
    start = cmd.scheduled_start.astimezone(timezone.utc)  # as PostgreSQL gives a timestamptz back
    order = {
        "id": uuid.uuid4(), "resident_id": cmd.resident_id, "county_code": resident.county_code,
        "provider_id": checked.provider["id"], "channel": cmd.channel, "call_reference": cmd.call_reference,
        "state": "placed", "items": checked.items, "scheduled_start": start, "scheduled_minutes": checked.minutes,
        "service_day": checked.day, "month": month, "price_fen": split.price_fen,
        **{f"{s}_fen": split.totals[s] for s in SOURCES}, "entitlement_use": split.used, "policy_ref": policy.ref,
        "subsidy_notes": notes, "placed_by": principal.subject, "placed_at": now, "updated_at": now,
        "due_at": first_due("placed", now, start, cfg.timers), **store.UNPLACED_DEFAULTS,
    }
    event = _order_event(order, "eldercare.order.placed.v1", {
        "service_code": checked.items[0]["service_code"], "provider_id": order["provider_id"],
        "scheduled_start": cmd.scheduled_start.isoformat(), "scheduled_minutes": checked.minutes,
        "price_fen": split.price_fen, "channel": cmd.channel,
        "items": [{"service_code": i["service_code"], "quantity": i["quantity"], "unit_price_fen": i["unit_price_fen"]}
                  for i in checked.items],
        "funding": {f"{s}_fen": split.totals[s] for s in SOURCES}, "policy_ref": policy.ref})
    return Placement(
        order,
        caps=sorted((code, fen, caps[code]) for code, fen in split.used.items() if fen),
        spend=sorted((s, fen, policy.budgets.get(s, 0)) for s, fen in split.spent.items() if fen),
        load=sorted((line.service_code, line.quantity, checked.capacity[line.service_code]) for line in checked.lines),
        outbox=outbox_row(event))


async def place_order(conn: asyncpg.Connection, principal: Principal, cmd: PlaceOrder, cfg: OrdersSettings,
                      claim: Claim, respond: Callable[[dict, object], StoredResponse], schema: str,
                      now: datetime | None = None, lock_budgets: bool = False) -> tuple[StoredResponse, bool]:
    """Claim the Idempotency-Key, check everything, price and split the order, take the caps, budgets
    and capacity it needs, and record it with its event and the key's answer — all in the caller's
    transaction, so a refusal writes nothing. Returns the answer and whether it is a replay.

    Two statements (the hot path: `eldercare bench orders`): `store.order_facts` reads without
    locks, `store.write_order` takes on condition. The caps and budget rows are the hottest of the
    service (every subsidised order of a county writes its budget rows), so they are locked only
    by that last statement, for its commit; if another order got there first, BudgetContended
    asks the caller to run it again with `lock_budgets` (locked before pricing)."""
    now = now or datetime.now(timezone.utc)
    _check_channel(principal, cmd)
    month = month_of(local_day(cmd.scheduled_start))
    facts = await store.order_facts(conn, cmd.resident_id, cmd.provider_id, month, claim.actor, claim.key,
                                    claim.fingerprint, principal.caregiver_id, [code for code, _ in cmd.items])
    replay = stored_answer(facts, claim.fingerprint)
    if replay is not None:
        return replay, True
    checked = check_order(principal, cmd, cfg, facts, now)
    resident = checked.resident
    policy = resolve(await cached_policy_versions(conn, facts["policies"] or []), resident.county_code, checked.day)
    benefits = benefits_for(policy, resident, checked.day)
    used, spent = facts["used"] or {}, facts["spent"] or {}
    if lock_budgets and benefits:
        used, spent = await store.lock_allowances(conn, cmd.resident_id, resident.county_code, month,
                                                  sorted(b.code for b in benefits),
                                                  sorted({b.source for b in benefits}))
    placement = price_order(principal, cmd, cfg, checked, policy, benefits, used, spent, now)
    answer = respond(placement.order, resident)
    taken = await store.write_order(conn, placement.order, placement.caps, placement.spend, placement.load,
                                    placement.outbox, claim.actor, claim.key,
                                    (answer.status, answer.body, answer.headers), schema)
    if len(taken["booked"]) < len(placement.load):
        for i, line in enumerate(checked.lines):
            if line.service_code not in taken["booked"]:
                raise over_capacity(line, checked.capacity[line.service_code], checked.day, i)
    if taken["caps"] < len(placement.caps) or taken["budgets"] < len(placement.spend):
        raise BudgetContended()
    return answer, False


# LOCK ORDER. Placing an order and ending one write the same shared rows: the resident's caps
# (entitlement_usage), the county's budgets (budget_spend), the provider's capacity (provider_load).
# Every transaction takes them in that order (store.write_order's statement does), and within a
# table in key order (benefit code, source, service code), so two of them never wait for each other
# (found by `eldercare bench orders --part lifecycle`: 8 callers deadlocked within a thousand orders
# while placing and releasing took them in different orders).


async def release(conn: asyncpg.Connection, row) -> None:
    """Give back what an order reserved when it ends without a visit: the resident's caps, the
    county's budget and the provider's capacity, in the LOCK ORDER (an UPDATE ... FROM locks rows in
    whatever order its join meets them, hence the SELECT ... ORDER BY ... FOR UPDATE first)."""
    use = dict(sorted((row["entitlement_use"] or {}).items()))
    if use:
        await conn.execute(
            "SELECT 1 FROM entitlement_usage WHERE resident_id = $1 AND month = $2 AND benefit_code = ANY($3::text[]) "
            "ORDER BY benefit_code FOR UPDATE", row["resident_id"], row["month"], list(use))
        await conn.execute(
            "UPDATE entitlement_usage u SET used_fen = u.used_fen - t.f FROM unnest($3::text[], $4::bigint[]) AS t(b, f) "
            "WHERE u.resident_id = $1 AND u.month = $2 AND u.benefit_code = t.b",
            row["resident_id"], row["month"], list(use), [int(v) for v in use.values()])
    spent = {s: row[f"{s}_fen"] for s in sorted(PUBLIC_SOURCES) if row[f"{s}_fen"]}
    if spent:
        await conn.execute(
            "SELECT 1 FROM budget_spend WHERE county_code = $1 AND month = $2 AND source = ANY($3::text[]) "
            "ORDER BY source FOR UPDATE", row["county_code"], row["month"], list(spent))
        await conn.execute(
            "UPDATE budget_spend b SET spent_fen = b.spent_fen - t.f FROM unnest($3::text[], $4::bigint[]) AS t(s, f) "
            "WHERE b.county_code = $1 AND b.month = $2 AND b.source = t.s",
            row["county_code"], row["month"], list(spent), list(spent.values()))
    for code, quantity in sorted((i["service_code"], i["quantity"]) for i in row["items"]):
        await conn.execute(
            "UPDATE provider_load SET booked = booked - $4 WHERE provider_id = $1 AND day = $2 AND service_code = $3",
            row["provider_id"], row["service_day"], code, quantity)


# Who may take each step (scope is checked as well: a provider its own orders, a county its own).
ACTION_ROLES = {
    "accept": {Role.PROVIDER, Role.CITY},
    "reject": {Role.PROVIDER, Role.CITY},
    "assign": {Role.PROVIDER, Role.CITY},
    "check_in": {Role.CAREGIVER},
    "check_out": {Role.CAREGIVER},
    "cancel": {Role.CITY, Role.COUNTY, Role.PROVIDER},
    "rate": {Role.CITY, Role.COUNTY},
}


async def load_for_action(conn: asyncpg.Connection, principal: Principal, order_id: uuid.UUID, roles: set[Role],
                          if_match: str | None):
    row = await store.fetch_order(conn, order_id, for_update=True)
    if row is None:
        raise OrderNotFound("No order has this id.", field="id")
    if principal.role == Role.CAREGIVER and row["caregiver_id"] != principal.caregiver_id:
        raise NotYourOrder("This order is not assigned to you.", field="caregiver_id")
    if not may_see_order(principal, row):
        raise Forbidden("This order is outside the token's scope.", field="id")
    if principal.role not in roles:
        raise Forbidden(f"The {principal.role.value} role may not do this.")
    check_if_match(if_match, row)
    return row


async def act(conn: asyncpg.Connection, principal: Principal, order_id: uuid.UUID, action: str, body: dict,
              cfg: OrdersSettings, if_match: str | None = None, now: datetime | None = None):
    """One lifecycle step by a person (accept, reject, assign, check-in, check-out, cancel, rate)."""
    now = now or datetime.now(timezone.utc)
    row = await load_for_action(conn, principal, order_id, ACTION_ROLES[action], if_match)
    target = next_state(row["state"], action)
    changes: dict = {"state": target}
    event: dict = {"state": target, "previous_state": row["state"], "at": now.isoformat(),
                   "provider_id": row["provider_id"]}
    extra_events: list[tuple[str, dict]] = []
    resident = await store.fetch_resident(conn, row["resident_id"])
    if action == "accept":
        changes.update(accepted_at=now, due_at=first_due("accepted", row["placed_at"], row["scheduled_start"],
                                                         cfg.timers))
    elif action in ("reject", "cancel"):
        changes.update(end_reason=body["reason"], ended_at=now, due_at=None)
        event["reason"] = body["reason"]
        await release(conn, row)
    elif action == "assign":
        caregiver = await _qualified_caregiver(conn, row, body["caregiver_id"], resident)
        changes.update(caregiver_id=caregiver, assigned_at=now)
        event["caregiver_id"] = caregiver
    elif action == "check_in":
        at = _visit_time(body, now, "time")
        fence = evv.geofence(_home(resident), body["lat"], body["lon"], body["accuracy_m"], cfg.geofence_m)
        other = await conn.fetchval(
            "SELECT id FROM orders WHERE caregiver_id = $1 AND id <> $2 AND check_in_at <= $3 "
            "AND (check_out_at IS NULL OR check_out_at > $3) AND state IN ('checked_in', 'completed', 'rated') LIMIT 1",
            row["caregiver_id"], row["id"], at)
        exceptions = evv.exceptions_at_check_in(fence, other is not None)
        changes.update(check_in_at=at, check_in_lat=body["lat"], check_in_lon=body["lon"],
                       check_in_accuracy_m=body["accuracy_m"], check_in_distance_m=fence.distance_m,
                       evv_exceptions=exceptions, due_at=None)
        event.update(caregiver_id=row["caregiver_id"], lat=body["lat"], lon=body["lon"], accuracy_m=body["accuracy_m"],
                     distance_m=fence.distance_m, evv_exceptions=exceptions, at=at.isoformat())
    elif action == "check_out":
        at = _visit_time(body, now, "time")
        if at < row["check_in_at"]:
            raise InvalidOrder("The check-out time is before the check-in.", field="time")
        fence = evv.geofence(_home(resident), body["lat"], body["lon"], body["accuracy_m"], cfg.geofence_m)
        actual = round((at - row["check_in_at"]).total_seconds() / 60, 1)
        other = await conn.fetchval(
            "SELECT id FROM orders WHERE caregiver_id = $1 AND id <> $2 AND check_in_at > $3 AND check_in_at < $4 "
            "LIMIT 1", row["caregiver_id"], row["id"], row["check_in_at"], at)
        exceptions = list(row["evv_exceptions"]) + evv.exceptions_at_check_out(
            fence, actual, row["scheduled_minutes"], cfg.short_visit_share)
        if other is not None and "caregiver_in_two_places" not in exceptions:
            exceptions.append("caregiver_in_two_places")
        status = "exception" if exceptions else "verified"
        changes.update(check_out_at=at, check_out_lat=body["lat"], check_out_lon=body["lon"],
                       check_out_accuracy_m=body["accuracy_m"], check_out_distance_m=fence.distance_m,
                       actual_minutes=actual, evv_exceptions=exceptions, evv_status=status,
                       exception_reason=body.get("exception_reason"))
        if resident is not None and resident.date_of_death is not None and row["service_day"] >= resident.date_of_death:
            changes["flags"] = sorted(set(row["flags"]) | {"after_death"})
        event.update(caregiver_id=row["caregiver_id"], lat=body["lat"], lon=body["lon"], accuracy_m=body["accuracy_m"],
                     distance_m=fence.distance_m, actual_minutes=actual, evv_status=status, evv_exceptions=exceptions,
                     at=at.isoformat())
        if status == "verified":
            extra_events.append(await _payable(conn, row, changes))
    elif action == "rate":
        changes.update(rating=body["rating"], rating_comment=body.get("comment"))
        event["rating"] = body["rating"]
    updated = await store.update_order(conn, row["id"], changes)
    events = [_order_event(updated, f"eldercare.order.{target}.v1", event)]
    events += [_order_event(updated, t, d) for t, d in extra_events]
    await add_events(conn, events)
    return updated, resident


def _home(resident) -> tuple[float, float] | None:
    if resident is None or resident.home_lat is None or resident.home_lon is None:
        return None
    return (resident.home_lat, resident.home_lon)


def _visit_time(body: dict, now: datetime, field: str) -> datetime:
    at = body.get("time") or now
    if at > now + timedelta(minutes=5):
        raise InvalidOrder("The visit time is in the future.", field=field)
    if at < now - timedelta(days=2):
        raise InvalidOrder("The visit time is more than two days ago; ask the county to record it.", field=field)
    return at


async def _qualified_caregiver(conn: asyncpg.Connection, row, caregiver_id: str, resident) -> str:
    caregiver, certs = await caregiver_with_certificates(conn, caregiver_id)
    if caregiver["provider_id"] != row["provider_id"]:
        raise NotQualified("This caregiver works for another provider.", field="caregiver_id")
    if not caregiver["active"]:
        raise NotQualified("This caregiver is not active.", field="caregiver_id")
    held = [(c["kind"], c["expires_on"]) for c in certs]
    for item in row["items"]:
        if not certificates_allow(held, item["qualification"], row["service_day"]):
            raise NotQualified(f"{item['service_code']} needs a valid {item['qualification']} certificate on "
                               f"{row['service_day'].isoformat()}; this caregiver has none.", field="caregiver_id")
    area = list(caregiver["service_area"])
    if area and resident is not None and resident.township not in area:
        raise NotQualified(f"The resident lives in {resident.township}, outside this caregiver's service area.",
                           field="caregiver_id")
    return caregiver_id


async def _payable(conn: asyncpg.Connection, row, changes: dict) -> tuple[str, dict]:
    """A completed, verified (or confirmed) order goes on its month's statement, or, when the
    county has closed that month, on the next open one as an adjustment."""
    month = month_of(local_day(changes.get("check_out_at") or row["check_out_at"]))
    await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1))", f"orders:close:{row['county_code']}")
    closed = await store.closed_months(conn, row["county_code"], month)
    target = month
    while target in closed:
        target = next_month(target)
    changes.update(settlement_month=target, adjustment=target != month)
    return "eldercare.order.settled.v1", {
        "government_fen": row["government_fen"], "collective_fen": row["collective_fen"],
        "donation_fen": row["social_fen"], "personal_fen": row["personal_fen"], "provider_id": row["provider_id"],
        "price_fen": row["price_fen"], "month": target, "adjustment": target != month}


async def explain_visit(conn: asyncpg.Connection, principal: Principal, order_id: uuid.UUID, reason: str,
                        if_match: str | None = None):
    """The caregiver (or provider) gives the reason for a visit that is an EVV exception."""
    row = await load_for_action(conn, principal, order_id, {Role.CAREGIVER, Role.PROVIDER}, if_match)
    if row["evv_status"] != "exception":
        raise TransitionRefused(f"The visit is {row['evv_status'] or 'not finished'}; only an exception is explained.",
                                field="evv.status", current_state=row["state"], evv_status=row["evv_status"])
    updated = await store.update_order(conn, row["id"], {"exception_reason": reason})
    return updated, await store.fetch_resident(conn, row["resident_id"])


async def confirm_visit(conn: asyncpg.Connection, principal: Principal, order_id: uuid.UUID, note: str | None,
                        if_match: str | None = None, now: datetime | None = None):
    """The county confirms an exception visit (with its reason given): it becomes payable."""
    now = now or datetime.now(timezone.utc)
    row = await load_for_action(conn, principal, order_id, {Role.COUNTY, Role.CITY}, if_match)
    if row["evv_status"] != "exception":
        raise TransitionRefused(f"The visit is {row['evv_status'] or 'not finished'}; only an exception is confirmed.",
                                field="evv.status", current_state=row["state"], evv_status=row["evv_status"])
    if not row["exception_reason"]:
        raise Unprocessable("The caregiver or provider must give the exception's reason first.", field="reason")
    changes = {"evv_status": "confirmed", "confirmed_by": principal.subject, "confirmed_at": now}
    settled = await _payable(conn, row, changes)
    updated = await store.update_order(conn, row["id"], changes)
    await add_events(conn, [
        _order_event(updated, "eldercare.order.visit_confirmed.v1", {
            "state": updated["state"], "previous_state": updated["state"], "at": now.isoformat(),
            "evv_status": "confirmed", "evv_exceptions": list(updated["evv_exceptions"]),
            "reason": updated["exception_reason"], "provider_id": updated["provider_id"]}),
        _order_event(updated, *settled)])
    return updated, await store.fetch_resident(conn, row["resident_id"])


# ================================================================ scheduler


async def run_due(conn: asyncpg.Connection, timers: Timers, now: datetime, limit: int) -> int:
    """Apply the timers of orders whose due time has come (called by the scheduler's leader; rows
    another replica holds are skipped). Returns how many orders it looked at."""
    rows = await conn.fetch(
        "SELECT * FROM orders WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT $2 "
        "FOR UPDATE SKIP LOCKED", now, limit)
    events: list[CloudEvent] = []
    for row in rows:
        step = due_step(row["state"], now, row["placed_at"], row["scheduled_start"], row["late_minutes"], timers)
        changes: dict = {"due_at": step.next_due}
        data: dict = {"previous_state": row["state"], "at": now.isoformat(), "provider_id": row["provider_id"],
                      "caregiver_id": row["caregiver_id"], "state": row["state"]}
        event_type = None
        if step.action in ("expire", "no_show"):
            target = next_state(row["state"], step.action)
            reason = "not accepted in time" if step.action == "expire" else "no check-in by the caregiver"
            changes.update(state=target, ended_at=now, end_reason=reason)
            await release(conn, row)
            event_type, data = f"eldercare.order.{target}.v1", {**data, "state": target, "reason": reason}
        elif step.action == "late":
            changes["late_minutes"] = step.late_minutes
            event_type, data = "eldercare.order.late.v1", {**data, "late_minutes": step.late_minutes}
        updated = await store.update_order(conn, row["id"], changes)
        if event_type is not None:
            events.append(_order_event(updated, event_type, data))
    await add_events(conn, events)
    return len(rows)


# ================================================================ settlement


async def statement_lines(conn: asyncpg.Connection, county: str, month: str, provider: str | None):
    from services.orders.domain.settlement import StatementLine

    rows = await conn.fetch(
        "SELECT * FROM orders WHERE county_code = $1 AND settlement_month = $2 AND ($3::text IS NULL OR "
        "provider_id = $3) ORDER BY provider_id, service_day, id", county, month, provider)
    return [StatementLine(r["county_code"], month, r["provider_id"], str(r["id"]), r["service_day"].isoformat(),
                          "、".join(f"{i['name_zh']}×{i['quantity']}" for i in r["items"]), r["evv_status"],
                          r["adjustment"], r["price_fen"], r["government_fen"], r["collective_fen"],
                          r["social_fen"], r["personal_fen"]) for r in rows]


async def settlement_scope(conn: asyncpg.Connection, principal: Principal, county: str | None,
                           provider: str | None) -> tuple[str, str | None]:
    """(county, provider) a caller may read statements of: a provider its own, a county its own."""
    if principal.role == Role.PROVIDER:
        provider = principal.provider_id
        county = await conn.fetchval("SELECT county_code FROM providers WHERE id = $1", provider)
        if county is None:
            raise PartyNotFound("The token names no known provider.", field="provider")
    elif principal.role == Role.COUNTY:
        county = county or principal.county
        principal.require_county(county)
    elif principal.role != Role.CITY:
        raise Forbidden(f"The {principal.role.value} role may not see settlements.")
    if not county:
        raise BadRequest("Name the county whose statement you want.", field="county")
    return known_county(county, "county"), provider


async def settlement(conn: asyncpg.Connection, principal: Principal, county: str | None, provider: str | None,
                     month: str) -> tuple[dict, list]:
    from services.orders.domain.settlement import statement

    county, provider = await settlement_scope(conn, principal, county, provider)
    lines = await statement_lines(conn, county, month, provider)
    doc = statement(county, month, lines)
    closure = await conn.fetchrow("SELECT * FROM settlement_closures WHERE county_code = $1 AND month = $2",
                                  county, month)
    doc["closed"] = closure is not None
    doc["closed_at"] = closure["closed_at"].isoformat() if closure else None
    if closure is not None and provider is None and closure["totals"] != doc["totals"]:
        # Cannot happen by construction (a closed month takes no new lines; money never changes after
        # placement); said loudly if it ever does rather than shown as if it were the closed figure.
        raise TransitionRefused("The closed statement no longer matches its orders.", field="month",
                                closed_totals=closure["totals"], current_totals=doc["totals"])
    return doc, lines


async def close_month(conn: asyncpg.Connection, principal: Principal, county: str, month: str) -> dict:
    """Close a county's statement month: from now on it is immutable; orders becoming payable
    later for that month go to the next open month as adjustments."""
    from services.orders.domain.settlement import statement, totals

    if principal.role not in (Role.CITY, Role.COUNTY):
        raise Forbidden(f"The {principal.role.value} role may not close statements.")
    principal.require_county(known_county(county))
    if month > month_of(datetime.now(CST).date()):
        raise Unprocessable("A month is closed once it has begun.", field="month")
    # Exclusive against orders becoming payable in this county (they hold the shared lock while
    # they read the closures), so no line lands in the month after its totals are taken.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"orders:close:{county}")
    lines = await statement_lines(conn, county, month, None)
    row = await conn.fetchrow(
        "INSERT INTO settlement_closures (county_code, month, closed_by, totals) VALUES ($1,$2,$3,$4) "
        "ON CONFLICT DO NOTHING RETURNING *", county, month, principal.subject, totals(lines))
    if row is None:
        raise MonthClosed(f"{month} is already closed for county {county}.", field="month")
    doc = statement(county, month, lines)
    return {**doc, "closed": True, "closed_at": row["closed_at"].isoformat()}
