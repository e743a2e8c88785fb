"""The registry's use cases: one function per command, given a connection inside a transaction.
Every change writes its event to the outbox in that same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import asyncpg

from services.registry.domain.assessment import AssessmentInvalid, assess
from services.registry.domain.errors import (
    InvalidRecord, OutsideScope, ResidentAlreadyRegistered, ResidentNotActive, ResidentNotFound, StaleVersion,
)
from services.registry.domain.residents import ResidentFields, age_on, family_doctor_problem
from services.registry.ids import new_resident_id
from services.registry.domain.access import LOOKUP_WINDOW, LOOKUPS_PER_WINDOW, lookup_retry_after, reason_problem
from services.registry.store import (
    LOOKUP_ACTION, RESIDENT_COLUMNS, fetch_resident, owner_county_of, recent_lookups, write_audit,
)
from shared.auth import Principal, Role
from shared.events import make_event
from shared.events.residents import ResidentSnapshot
from shared.idcard import mask_id_number, mask_phone
from shared.messaging.outbox import add_events
from shared.observability import current_trace_id
from shared.problems import BadRequest, Forbidden, TooManyRequests

SOURCE = "registry"
PERSONAL_FIELDS = ["id_number", "phone", "emergency_phone", "birth_date"]


def today_local() -> date:
    # The city runs on China Standard Time; "today" for birth dates and deaths is local.
    return datetime.now(timezone(timedelta(hours=8))).date()


# ---------------------------------------------------------------- views


def can_reveal(principal: Principal, county_code: str) -> bool:
    """Who may see ID and phone numbers in clear: the city, and a county for its own people."""
    return principal.role == Role.CITY or (principal.role == Role.COUNTY and principal.county == county_code)


def resident_view(row: asyncpg.Record, *, reveal: bool, today: date | None = None) -> dict:
    """The API's resident: personal numbers masked unless revealed (and then audited by the caller).
    The birth date is personal too: with a masked ID number it would give the whole number back, so a
    masked view narrows it no further than the age does (~365 dates; an ID-number lookup to confirm
    one is audited and rate-limited)."""
    today = today or today_local()
    age = age_on(row["birth_date"], today)
    view = {
        "id": str(row["id"]),
        "name": row["name"],
        "id_number": row["id_number"] if reveal else mask_id_number(row["id_number"]),
        "phone": row["phone"] if reveal else mask_phone(row["phone"]),
        "county_code": row["county_code"],
        "township": row["township"],
        "village": row["village"],
        "address": row["address"],
        "living_arrangement": row["living_arrangement"],
        "categories": list(row["categories"]),
        "ability_level": row["ability_level"],
        "emergency_contact": row["emergency_contact"],
        "emergency_phone": row["emergency_phone"] if reveal else mask_phone(row["emergency_phone"]),
        # Masked, the age is all of the birth date shown: the year beside it would tell whether the
        # birthday has passed, and the masked ID number hides the check character for the same reason.
        "birth_date": row["birth_date"].isoformat() if reveal else None,
        "birth_year": row["birth_date"].year if reveal else None,
        "age": age,
        "gender": row["gender"],
        "advanced_age": age >= 80,
        "centenarian": age >= 100,
        "status": row["status"],
        "family_bed": row["family_bed"],
        "family_doctor_contract": row["family_doctor_contract"],
        "family_doctor_signed_on": (row["family_doctor_signed_on"].isoformat()
                                    if row["family_doctor_signed_on"] else None),
        "date_of_death": row["date_of_death"].isoformat() if row["date_of_death"] else None,
        "home_lat": row["home_lat"],
        "home_lon": row["home_lon"],
        "version": row["version"],
        "masked": not reveal,
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    return view


def etag_of(row: asyncpg.Record) -> str:
    return f'"{row["id"]}.{row["version"]}"'


def version_from_if_match(if_match: str, resident_id: uuid.UUID) -> int:
    tag = if_match.strip().removeprefix("W/").strip('"')
    rid, _, version = tag.rpartition(".")
    if rid != str(resident_id) or not version.isdigit():
        raise StaleVersion("If-Match does not name a version of this resident; GET it for its ETag.",
                           field="If-Match")
    return int(version)


def snapshot(row: asyncpg.Record) -> ResidentSnapshot:
    return ResidentSnapshot(
        resident_id=str(row["id"]), county_code=row["county_code"], name=row["name"],
        birth_date=row["birth_date"], gender=row["gender"], township=row["township"], village=row["village"],
        living_arrangement=row["living_arrangement"], categories=list(row["categories"]),
        ability_level=row["ability_level"], status=row["status"], family_bed=row["family_bed"],
        version=row["version"], home_lat=row["home_lat"], home_lon=row["home_lon"],
        family_doctor_contract=row["family_doctor_contract"], family_doctor_signed_on=row["family_doctor_signed_on"],
    )


def resident_event(event_type: str, row: asyncpg.Record, data, source: str = SOURCE):
    return make_event(event_type, source, data, subject=str(row["id"]), countycode=row["county_code"])


# ---------------------------------------------------------------- scope


def require_personal_data_role(principal: Principal) -> None:
    if principal.role not in (Role.CITY, Role.COUNTY):
        raise Forbidden(f"The {principal.role.value} role may not see residents' records.")


async def load_in_scope(conn: asyncpg.Connection, principal: Principal, resident_id: uuid.UUID,
                        *, for_update: bool = False) -> asyncpg.Record:
    require_personal_data_role(principal)
    row = await fetch_resident(conn, resident_id, for_update=for_update)
    if row is None:
        raise ResidentNotFound("No resident has this id.", field="id")
    if not principal.may_see_county(row["county_code"]):
        raise OutsideScope("This resident belongs to another county.", field="id")
    return row


async def audit_reveal(conn: asyncpg.Connection, principal: Principal, rows: list[asyncpg.Record], reason: str,
                       action: str = "read_unmasked") -> None:
    await write_audit(conn, actor=principal.subject, role=principal.role.value, county_code=principal.county,
                      action=action, resident_ids=[r["id"] for r in rows], fields=PERSONAL_FIELDS, reason=reason,
                      trace_id=current_trace_id())


def check_reason(reason: str | None) -> str:
    """The reason for an identity access, normalised; 400 when missing, 422 when not a real one."""
    problem = reason_problem(reason)
    if problem is not None:
        kind, message = problem
        raise (BadRequest if kind == "missing" else InvalidRecord)(message, field="reason")
    return " ".join((reason or "").split())


def check_reveal(principal: Principal, county_code: str | None, reveal: bool, reason: str | None) -> None:
    if not reveal:
        return
    if county_code is not None and not can_reveal(principal, county_code) or principal.role not in (Role.CITY, Role.COUNTY):
        raise Forbidden("This role may not see ID and phone numbers in clear.", field="reveal")
    check_reason(reason)


async def audit_lookup(conn: asyncpg.Connection, principal: Principal, id_number_hash: str,
                       rows: list[asyncpg.Record], reason: str) -> None:
    """An ID-number lookup is an identity access whether it finds anyone or not: who, when, why and
    which number (its keyed hash), like a reveal."""
    await write_audit(conn, actor=principal.subject, role=principal.role.value, county_code=principal.county,
                      action=LOOKUP_ACTION, resident_ids=[r["id"] for r in rows] or [None], fields=["id_number"],
                      reason=reason, trace_id=current_trace_id(), id_number_hash=id_number_hash)


async def check_lookup_rate(conn: asyncpg.Connection, principal: Principal) -> None:
    """429 once the caller has looked up LOOKUPS_PER_WINDOW people within LOOKUP_WINDOW. Call inside
    the transaction that writes the lookup's audit row: the per-caller lock makes concurrent lookups
    count one after the other, across processes."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"lookup:{principal.subject}")
    now = await conn.fetchval("SELECT now()")
    recent = await recent_lookups(conn, principal.subject, now - LOOKUP_WINDOW, LOOKUPS_PER_WINDOW)
    retry = lookup_retry_after(recent, now)
    if retry is not None:
        raise TooManyRequests(
            f"At most {LOOKUPS_PER_WINDOW} ID-number lookups a minute per caller; retry in {retry} s.",
            field="id_number", headers={"Retry-After": str(retry)}, retry_after=retry)


# ---------------------------------------------------------------- commands


async def register(conn: asyncpg.Connection, principal: Principal, fields: ResidentFields,
                   source: str = SOURCE) -> asyncpg.Record:
    """Register a resident once city-wide; a second registration names the owning county only."""
    require_personal_data_role(principal)
    principal.require_county(fields.county_code)
    row = await conn.fetchrow(
        f"""INSERT INTO residents (id, id_number, name, phone, county_code, township, village, address,
               living_arrangement, categories, ability_level, emergency_contact, emergency_phone, birth_date, gender,
               home_lat, home_lon, family_doctor_contract, family_doctor_signed_on)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)
            ON CONFLICT (id_number) DO NOTHING RETURNING {RESIDENT_COLUMNS}""",
        new_resident_id(), fields.id_number, fields.name, fields.phone, fields.county_code, fields.township,
        fields.village, fields.address, fields.living_arrangement, fields.categories, fields.ability_level,
        fields.emergency_contact, fields.emergency_phone, fields.birth_date, fields.gender,
        fields.home_lat, fields.home_lon, bool(fields.family_doctor_contract), fields.family_doctor_signed_on,
    )
    if row is None:
        owner = await owner_county_of(conn, fields.id_number)
        raise ResidentAlreadyRegistered(
            f"This ID number is already registered by county {owner}; moving a resident is a transfer.",
            field="id_number", owner_county=owner,
        )
    await add_events(conn, [resident_event("eldercare.resident.registered.v1", row,
                                           {"resident": snapshot(row).model_dump(mode="json")}, source)])
    return row


PATCHABLE = ("name", "phone", "township", "village", "address", "living_arrangement", "categories",
             "emergency_contact", "emergency_phone", "family_bed", "home_lat", "home_lon",
             "family_doctor_contract", "family_doctor_signed_on")
FAMILY_DOCTOR = ("family_doctor_contract", "family_doctor_signed_on")


def family_doctor_changes(row, changes: dict) -> dict:
    """The contract and its date after `changes` (only the fields given) applied to `row`: ending a
    contract clears its date; a date needs a contract (422 naming the date) and no date in the future."""
    if not any(f in changes for f in FAMILY_DOCTOR):
        return changes
    contract = changes.get("family_doctor_contract", row["family_doctor_contract"])
    if "family_doctor_signed_on" in changes:
        signed_on = changes["family_doctor_signed_on"]
    else:
        signed_on = row["family_doctor_signed_on"] if contract else None
    if signed_on is not None and signed_on > today_local():
        raise InvalidRecord("family_doctor_signed_on is in the future; it is the day the contract was signed.",
                            field="family_doctor_signed_on")
    problem = family_doctor_problem(contract, signed_on)
    if problem is not None:
        raise InvalidRecord(problem + ".", field="family_doctor_signed_on")
    return {**changes, "family_doctor_contract": contract, "family_doctor_signed_on": signed_on}


async def update(conn: asyncpg.Connection, principal: Principal, resident_id: uuid.UUID, expected_version: int,
                 changes: dict) -> asyncpg.Record:
    """Apply a partial update if the caller saw the current version (optimistic concurrency)."""
    row = await load_in_scope(conn, principal, resident_id, for_update=True)
    if row["version"] != expected_version:
        raise StaleVersion(f"The resident changed since you read it (now version {row['version']}); "
                           "GET it again and retry.", field="If-Match", current_version=row["version"])
    changes = family_doctor_changes(row, changes)
    changed = {k: v for k, v in changes.items() if k in PATCHABLE and _differs(row[k], v)}
    if not changed:
        return row
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(changed, start=2))
    row = await conn.fetchrow(
        f"UPDATE residents SET {sets}, version = version + 1, updated_at = now() WHERE id = $1 "
        f"RETURNING {RESIDENT_COLUMNS}",
        resident_id, *changed.values(),
    )
    await add_events(conn, [resident_event("eldercare.resident.updated.v1", row,
                                           {"resident": snapshot(row).model_dump(mode="json"),
                                            "changed": sorted(changed)})])
    return row


def _differs(old, new) -> bool:
    if isinstance(old, list) or isinstance(new, list):
        return sorted(old or []) != sorted(new or [])
    return old != new


@dataclass(frozen=True, slots=True)
class AssessmentCommand:
    assessor: str
    assessed_on: date
    reason: str
    items: dict[str, int] | None = None
    level: int | None = None
    coma: bool = False
    diagnosed_mental_disorder: bool = False
    care_risk_events_30d: int = 0
    notes: str | None = None


async def record_assessment(conn: asyncpg.Connection, principal: Principal, resident_id: uuid.UUID,
                            cmd: AssessmentCommand) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Record an assessment (history kept) and set the resident's ability level from it."""
    row = await load_in_scope(conn, principal, resident_id, for_update=True)
    if row["status"] != "active":
        raise ResidentNotActive(f"The resident is {row['status']}; only active residents are assessed.",
                                field="id")
    if cmd.assessed_on > today_local():
        raise InvalidRecord("The assessment date is in the future.", field="assessed_on")
    if cmd.assessed_on < row["birth_date"]:
        raise InvalidRecord("The assessment date is before the resident's birth.", field="assessed_on")
    try:
        result = assess(cmd.items, level=cmd.level, coma=cmd.coma,
                        diagnosed_mental_disorder=cmd.diagnosed_mental_disorder,
                        care_risk_events_30d=cmd.care_risk_events_30d)
    except AssessmentInvalid as exc:
        raise InvalidRecord(exc.message, field=exc.field) from None
    assessment = await conn.fetchrow(
        "INSERT INTO assessments (id, resident_id, level, total_score, items, reason, assessor, assessed_on, notes, "
        "recorded_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING *",
        uuid.uuid4(), resident_id, result.level, result.total if result.total >= 0 else None, cmd.items,
        cmd.reason, cmd.assessor, cmd.assessed_on, cmd.notes, principal.subject,
    )
    updated = await conn.fetchrow(
        f"UPDATE residents SET ability_level = $2, version = version + 1, updated_at = now() WHERE id = $1 "
        f"RETURNING {RESIDENT_COLUMNS}", resident_id, result.level,
    )
    await add_events(conn, [resident_event("eldercare.resident.assessed.v1", updated, {
        "resident_id": str(resident_id), "county_code": updated["county_code"],
        "assessment_id": str(assessment["id"]), "level": result.level, "previous_level": row["ability_level"],
        "total_score": assessment["total_score"], "reason": cmd.reason,
        "assessed_on": cmd.assessed_on.isoformat(), "assessor": cmd.assessor,
    })])
    return updated, assessment


async def record_death(conn: asyncpg.Connection, principal: Principal, resident_id: uuid.UUID,
                       date_of_death: date) -> asyncpg.Record:
    row = await load_in_scope(conn, principal, resident_id, for_update=True)
    if row["status"] != "active":
        raise ResidentNotActive(f"The resident is already {row['status']}.", field="id")
    if date_of_death > today_local():
        raise InvalidRecord("The date of death is in the future.", field="date_of_death")
    if date_of_death < row["birth_date"]:
        raise InvalidRecord("The date of death is before the birth date.", field="date_of_death")
    updated = await conn.fetchrow(
        f"UPDATE residents SET status = 'deceased', date_of_death = $2, version = version + 1, updated_at = now() "
        f"WHERE id = $1 RETURNING {RESIDENT_COLUMNS}", resident_id, date_of_death,
    )
    await add_events(conn, [resident_event("eldercare.resident.deceased.v1", updated, {
        "resident_id": str(resident_id), "county_code": updated["county_code"],
        "date_of_death": date_of_death.isoformat()})])
    return updated


async def transfer(conn: asyncpg.Connection, principal: Principal, resident_id: uuid.UUID, to_county: str,
                   township: str, village: str, address: str | None, known_counties: frozenset[str]) -> asyncpg.Record:
    """Move a resident to another county: the receiving county sees them afterwards, the sender no longer."""
    row = await load_in_scope(conn, principal, resident_id, for_update=True)
    if row["status"] != "active":
        raise ResidentNotActive(f"The resident is {row['status']}; only active residents move.", field="id")
    if to_county not in known_counties:
        raise InvalidRecord(f"'{to_county}' is not a county code of this city.", field="to_county")
    if to_county == row["county_code"]:
        raise InvalidRecord("The resident already lives in this county.", field="to_county")
    updated = await conn.fetchrow(
        f"UPDATE residents SET county_code = $2, township = $3, village = $4, address = $5, version = version + 1, "
        f"updated_at = now() WHERE id = $1 RETURNING {RESIDENT_COLUMNS}",
        resident_id, to_county, township, village, address,
    )
    await add_events(conn, [resident_event("eldercare.resident.transferred.v1", updated, {
        "resident_id": str(resident_id), "from_county": row["county_code"], "to_county": to_county,
        "resident": snapshot(updated).model_dump(mode="json")})])
    return updated


async def upsert_from_county(conn: asyncpg.Connection, fields: ResidentFields, source: str) -> tuple[asyncpg.Record, str]:
    """A county platform's resident record: register it, or update it when it changed. A number
    registered by another county is a conflict naming that county only."""
    existing = await conn.fetchrow(f"SELECT {RESIDENT_COLUMNS} FROM residents WHERE id_number = $1 FOR UPDATE",
                                   fields.id_number)
    if existing is None:
        city = Principal(subject=source, role=Role.CITY)
        return await register(conn, city, fields, source=source), "registered"
    if existing["county_code"] != fields.county_code:
        raise ResidentAlreadyRegistered(
            f"This ID number is already registered by county {existing['county_code']}; moving a resident is a "
            "transfer.", field="data.id_number", owner_county=existing["county_code"])
    changes = {name: getattr(fields, name) for name in PATCHABLE if name not in ("family_bed", *FAMILY_DOCTOR)}
    changes["ability_level"] = fields.ability_level
    if fields.home_lat is None:
        # A county platform that sends no location keeps the one the registry has.
        del changes["home_lat"], changes["home_lon"]
    if fields.family_doctor_contract is not None:  # not sent: the recorded contract stays
        changes["family_doctor_contract"] = fields.family_doctor_contract
        if fields.family_doctor_signed_on is not None or not fields.family_doctor_contract:
            changes["family_doctor_signed_on"] = fields.family_doctor_signed_on  # else the recorded date stays
    changed = {k: v for k, v in changes.items() if _differs(existing[k], v)}
    if not changed:
        return existing, "unchanged"
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(changed, start=2))
    row = await conn.fetchrow(
        f"UPDATE residents SET {sets}, version = version + 1, updated_at = now() WHERE id = $1 "
        f"RETURNING {RESIDENT_COLUMNS}", existing["id"], *changed.values())
    await add_events(conn, [resident_event("eldercare.resident.updated.v1", row,
                                           {"resident": snapshot(row).model_dump(mode="json"),
                                            "changed": sorted(changed)}, source)])
    return row, "updated"


async def establish_family_beds(conn: asyncpg.Connection, resident_ids: list[uuid.UUID], source: str) -> int:
    """Mark residents as having a family elder-care bed (once) and tell the other services."""
    rows = await conn.fetch(
        f"UPDATE residents SET family_bed = true, version = version + 1, updated_at = now() "
        f"WHERE id = ANY($1::uuid[]) AND NOT family_bed RETURNING {RESIDENT_COLUMNS}", resident_ids)
    await add_events(conn, [resident_event("eldercare.resident.updated.v1", r,
                                           {"resident": snapshot(r).model_dump(mode="json"),
                                            "changed": ["family_bed"]}, source) for r in rows])
    return len(rows)
