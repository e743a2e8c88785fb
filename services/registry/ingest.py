"""The county ingest gateway: check a batch of county events, resolve residents (never forwarding
an ID number), drop repeats, apply resident records, forward the rest on the ingest topic, all in
one transaction: the answer goes out only once the accepted events are durable."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

from services.registry import handlers
from services.registry.domain.errors import ResidentAlreadyRegistered
from services.registry.domain.ingest import (
    FAMILY_BED, RESIDENT_UPSERTED, Checked, Verdict, check_event, claim_key, forward_envelope,
)
from services.registry.domain.residents import validate_resident
from services.registry.store import SCHEMA, write_audit
from shared.auth import Principal, Role
from shared.events.county import COUNTY_LEVEL_TYPES
from shared.messaging.outbox import add_new_rows, fast_event_json
from shared.messaging.topics import INGEST
from shared.observability import current_trace_id, current_traceparent
from shared.privacy import keyed_hash
from shared.problems import DomainError, Problem

Live = tuple[Checked, str | None]  # an event that will be applied, and its resident id (None: county-level)

# Repeats are recognised by (county, source, id), never by (source, id) alone: `source` is whatever
# the caller writes, so on its own it let county B claim the ids county A would use and have A's
# events (an SOS among them) answered `duplicate` and dropped. The county is the token's (a county
# token may post only its own county's events, checked before this), so every claim is scoped to
# the county that made it, whatever source string it wrote; a city caller posting for a county
# shares that county's claims, as it should. (Requiring `source` to be the county's own platform
# source would also close the hole, but it rejects county systems that name themselves; the key
# does not depend on trusting the string at all.) Migration 0004 has the key.
#
# `add_new_rows` claims every event's key and writes the outbox rows of those claimed now, in posted
# order (the outbox id order is the publish order, so a resident's events keep theirs), in one round
# trip. The caller drops repeats within the batch first, so each claim matches one posted row.

# Residents named by subject come back only when they are not of the event's county (usually
# none); those named by ID number come back only when the event's county has them. Resolution sees
# the event's county alone (a county token may post only its own), so another county's resident
# and a number nobody registered look the same from here on: the gateway is no oracle of the
# city-wide register.
_RESOLVE = """
SELECT q.ref::text AS key, q.county AS county_code, NULL::text AS id
FROM unnest($1::uuid[], $2::text[]) AS q(ref, county)
WHERE NOT EXISTS (SELECT 1 FROM residents r WHERE r.id = q.ref AND r.county_code = q.county)
UNION ALL
SELECT r.id_number, r.county_code, r.id::text
FROM unnest($3::text[], $4::text[]) AS q(id_number, county)
JOIN residents r ON r.id_number = q.id_number AND r.county_code = q.county
"""

# An upsert of a number another county holds is refused (one person, one registration), and the
# refusal is the one thing the gateway tells a county of the city-wide register: so it names no
# county (SPEC's conflict naming the owner is for clerks registering at the registry's API) and
# leaves an audit row, as an ID-number lookup does.
CONFLICT_ACTION = "ingest_id_number_conflict"
_CONFLICT_REASON = "county ingest: resident.upserted with an ID number registered in another county"


@dataclass(slots=True)
class KnownResidents:
    """What the registry knows of the residents a batch names."""

    absent: set[tuple[str, str]]  # (resident id, county) named by subject, with no such resident there
    by_number: dict[tuple[str, str], str]  # (ID number, the event's county) -> resident id

    def resident_of(self, c: Checked) -> str | None:
        """The id of the resident the event names, if the event's county has that resident."""
        county = c.event.countycode
        if c.resident_ref:
            return None if (c.resident_ref, county) in self.absent else c.resident_ref
        return self.by_number.get((c.id_number or "", county))


async def ingest_batch(conn: asyncpg.Connection, principal: Principal, raw_events: list,
                       known_counties: frozenset[str], audit_secret: str) -> list[Verdict]:
    caller_county = principal.county if principal.role == Role.COUNTY else None
    results, checked = _check_all(raw_events, caller_county, known_counties)
    residents = await _resolve_residents(conn, checked)
    upserts, live = _match_residents(checked, residents, known_counties)
    live = _drop_repeats(live)
    forwards = [(c, rid) for c, rid in live if c.event.type != RESIDENT_UPSERTED]
    rows = _outbox_rows(forwards)
    await _apply_upserts(conn, principal, [c for c, _ in live if c.event.type == RESIDENT_UPSERTED], upserts,
                         audit_secret)
    repeats = await add_new_rows(conn, rows, [claim_key(c) for c, _ in forwards], "ingest_events",
                                 ("county_code", "source", "event_id"), SCHEMA)
    await _keep_county_reports(conn, forwards, rows, repeats)
    family_beds: list[uuid.UUID] = []
    for position, (c, resident_id) in enumerate(forwards, start=1):
        if position in repeats:
            c.verdict.status = "duplicate"
        elif c.event.type == FAMILY_BED and resident_id:
            family_beds.append(uuid.UUID(resident_id))
    if family_beds:
        await handlers.establish_family_beds(conn, family_beds, "registry/ingest")
    return results


def _check_all(raw_events: list, caller_county: str | None,
               known_counties: frozenset[str]) -> tuple[list[Verdict], list[Checked]]:
    """A verdict per posted event, and those that passed their schema and scope checks."""
    results: list[Verdict] = []
    checked: list[Checked] = []
    for index, raw in enumerate(raw_events):
        outcome = check_event(index, raw, caller_county, known_counties)
        if isinstance(outcome, Verdict):
            results.append(outcome)
        else:
            results.append(outcome.verdict)
            checked.append(outcome)
    return results, checked


def _match_residents(checked: list[Checked], residents: KnownResidents,
                     known_counties: frozenset[str]) -> tuple[dict[int, object], list[Live]]:
    """Each event with its resident (rejected when none of the event's county has that id or ID
    number), and the resident records of upsert events (by event index) once they validate."""
    upserts: dict[int, object] = {}
    live: list[Live] = []
    for c in checked:
        if c.event.type == RESIDENT_UPSERTED:
            fields, errors = validate_resident({**c.data.model_dump(), "id_number": c.id_number}, known_counties,
                                               handlers.today_local())
            if errors:
                c.verdict.reject(f"data.{errors[0].field}", f"data.{errors[0].field}: {errors[0].message}")
                continue
            upserts[c.verdict.index] = fields
            live.append((c, None))
            continue
        if c.resident_ref is None and c.id_number is None:
            live.append((c, None))  # county-level event
            continue
        resident_id = residents.resident_of(c)
        if resident_id is None:
            # The same words whether the resident is unknown or another county's: nothing leaks.
            field = "subject" if c.resident_ref else "data.id_number"
            c.verdict.reject(field, f"{field}: no resident with this {'id' if c.resident_ref else 'ID number'} "
                                    f"in county {c.event.countycode}")
            continue
        live.append((c, resident_id))
    return upserts, live


def _drop_repeats(live: list[Live]) -> list[Live]:
    """The first of several events with one claim key in a batch counts; the others are duplicates."""
    seen: set[tuple[str, str, str]] = set()
    kept: list[Live] = []
    for c, resident_id in live:
        key = claim_key(c)
        if key in seen:
            c.verdict.status = "duplicate"
            continue
        seen.add(key)
        kept.append((c, resident_id))
    return kept


async def _resolve_residents(conn: asyncpg.Connection, checked: list[Checked]) -> KnownResidents:
    """One query for every resident the batch names (an upsert's ID number is its own record)."""
    refs = list({(c.resident_ref, c.event.countycode) for c in checked if c.resident_ref})
    numbers = list({(c.id_number, c.event.countycode) for c in checked
                    if c.id_number and c.event.type != RESIDENT_UPSERTED})
    known = KnownResidents(absent=set(), by_number={})
    if not refs and not numbers:
        return known
    rows = await conn.fetch(_RESOLVE, [ref for ref, _ in refs], [county for _, county in refs],
                            [number for number, _ in numbers], [county for _, county in numbers])
    for key, county, resident_id in rows:
        if resident_id is None:
            known.absent.add((key, county))
        else:
            known.by_number[(key, county)] = resident_id
    return known


def _outbox_rows(forwards: list[Live]) -> list[tuple]:
    """The outbox row of each event as it goes on the ingest topic (keyed by its subject)."""
    traceparent = current_traceparent()
    now_iso = datetime.now(timezone.utc).isoformat()
    rows = []
    for c, resident_id in forwards:
        envelope = forward_envelope(c, resident_id, traceparent, now_iso)
        rows.append((envelope["id"], INGEST.name, envelope["subject"], fast_event_json(**envelope), None))
    return rows


# The registry keeps what reporting's county figures are made of, so a re-publish job can send it
# again after the broker and the outbox have let it go: the latest report of each facility (an
# older one arriving late does not replace it) and every training record (the totals add them up).
_KEEP_FACILITIES = """
INSERT INTO county_reports (event_id, county_code, type, key, facility_id, reported_at, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bytea[])
ON CONFLICT (county_code, facility_id) WHERE facility_id IS NOT NULL DO UPDATE SET
    event_id = EXCLUDED.event_id, key = EXCLUDED.key, reported_at = EXCLUDED.reported_at, payload = EXCLUDED.payload
WHERE county_reports.reported_at <= EXCLUDED.reported_at
"""
_KEEP_TRAINING = """
INSERT INTO county_reports (event_id, county_code, type, key, facility_id, reported_at, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bytea[])
ON CONFLICT DO NOTHING
"""


async def _keep_county_reports(conn: asyncpg.Connection, forwards: list[Live], outbox: list[tuple],
                               repeats: set[int]) -> None:
    facilities: dict[tuple[str, str], tuple] = {}
    training: list[tuple] = []
    now = datetime.now(timezone.utc)
    for i, (c, _) in enumerate(forwards):
        if i + 1 in repeats or c.event.type not in COUNTY_LEVEL_TYPES:
            continue
        at = c.event.time or now
        facility = getattr(c.data, "facility_id", None)
        forward_id, _, key, payload, _ = outbox[i]
        county = c.event.countycode
        row = (forward_id, county, c.event.type, key, facility, at, payload)
        if facility is None:
            training.append(row)
        elif (old := facilities.get((county, facility))) is None or old[5] <= at:
            facilities[(county, facility)] = row  # one row per facility and statement
    for sql, rows in ((_KEEP_FACILITIES, list(facilities.values())), (_KEEP_TRAINING, training)):
        if rows:
            await conn.execute(sql, *map(list, zip(*rows)))


async def _apply_upserts(conn: asyncpg.Connection, principal: Principal, items: list[Checked],
                         upserts: dict[int, object], audit_secret: str) -> None:
    """Resident records, one by one: each may fail on its own (another county's number) and then
    gives its claim back, so a corrected retry is not taken for a repeat."""
    caller_county = principal.county if principal.role == Role.COUNTY else None
    fresh = await _claim(conn, items)
    for c in items:
        if claim_key(c) not in fresh:
            c.verdict.status = "duplicate"
            continue
        try:
            async with conn.transaction():
                row, _ = await handlers.upsert_from_county(conn, upserts[c.verdict.index], c.event.source)
            c.verdict.resident_id = str(row["id"])
        except ResidentAlreadyRegistered as exc:
            await _unclaim(conn, c)
            if caller_county is None:  # the city sees every county: the owner is named
                c.verdict.reject("data.id_number", exc.detail)
                continue
            await write_audit(conn, actor=principal.subject, role=principal.role.value,
                              county_code=caller_county, action=CONFLICT_ACTION, resident_ids=[None],
                              fields=["id_number"], reason=_CONFLICT_REASON, trace_id=current_trace_id(),
                              id_number_hash=keyed_hash(audit_secret, "audit/id-number", c.id_number or ""))
            c.verdict.reject("data.id_number", f"data.id_number: county {c.event.countycode} cannot register this "
                                               "ID number (it is registered elsewhere in the city); moving a "
                                               "resident is a transfer")
        except (DomainError, Problem) as exc:
            await _unclaim(conn, c)
            c.verdict.reject(exc.field or "data", exc.detail)


async def _claim(conn: asyncpg.Connection, items: list[Checked]) -> set[tuple[str, str, str]]:
    """Record the claim key of each event; what was recorded before is a repeat."""
    if not items:
        return set()
    rows = await conn.fetch(
        "INSERT INTO ingest_events (county_code, source, event_id) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ORDER BY 1, 2, 3 "
        "ON CONFLICT DO NOTHING RETURNING county_code, source, event_id",
        [c.event.countycode for c in items], [c.event.source for c in items], [c.event.id for c in items])
    return {(r["county_code"], r["source"], r["event_id"]) for r in rows}


async def _unclaim(conn: asyncpg.Connection, c: Checked) -> None:
    await conn.execute("DELETE FROM ingest_events WHERE county_code = $1 AND source = $2 AND event_id = $3",
                       *claim_key(c))
