"""The county ingest gateway: check a batch of county events, resolve residents (never forwarding
an ID number), drop repeats, apply resident records, forward the rest on the ingest topic, all in
one transaction: the answer goes out only once the accepted events are durable."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import asyncpg
import orjson

from services.registry import handlers
from services.registry.domain.ingest import (
    FAMILY_BED, RESIDENT_UPSERTED, Checked, Verdict, check_event, forward_envelope, forward_key,
)
from services.registry.domain.residents import validate_resident
from shared.auth import Principal, Role
from shared.messaging.outbox import add_rows
from shared.messaging.topics import INGEST
from shared.observability import current_traceparent
from shared.problems import Problem


async def ingest_batch(conn: asyncpg.Connection, principal: Principal, raw_events: list,
                       known_counties: frozenset[str]) -> list[Verdict]:
    caller_county = principal.county if principal.role == Role.COUNTY else None
    results: list[Verdict] = []
    checked: list[Checked] = []
    for index, raw in enumerate(raw_events):
        outcome = check_event(index, raw, caller_county, known_counties)
        if isinstance(outcome, Verdict):
            results.append(outcome)
        else:
            results.append(outcome.verdict)
            checked.append(outcome)

    residents = await _resolve_residents(conn, checked)
    upserts: dict[int, object] = {}
    live: list[tuple[Checked, str | None]] = []
    for c in checked:
        if c.event.type == RESIDENT_UPSERTED:
            fields, errors = validate_resident({**c.data.model_dump(), "id_number": c.id_number}, known_counties)
            if errors:
                c.verdict.reject(f"data.{errors[0].field}", f"data.{errors[0].field}: {errors[0].message}")
                continue
            upserts[c.verdict.index] = fields
            live.append((c, None))
            continue
        if c.resident_ref is None and c.id_number is None:
            live.append((c, None))  # county-level event
            continue
        found = residents.get(c.resident_ref or c.id_number or "")
        if found is None or found["county_code"] != c.event.countycode:
            # The same words whether the resident is unknown or another county's: nothing leaks.
            field = "subject" if c.resident_ref else "data.id_number"
            c.verdict.reject(field, f"{field}: no resident with this {'id' if c.resident_ref else 'ID number'} "
                                    f"in county {c.event.countycode}")
            continue
        live.append((c, str(found["id"])))

    fresh = await _claim(conn, [c for c, _ in live])
    forwards: list[tuple] = []
    family_beds: list[uuid.UUID] = []
    now_iso = datetime.now(timezone.utc).isoformat()
    traceparent = current_traceparent()
    for c, resident_id in live:
        if (c.event.source, c.event.id) not in fresh:
            c.verdict.status = "duplicate"
            continue
        fresh.discard((c.event.source, c.event.id))
        if c.event.type == RESIDENT_UPSERTED:
            try:
                async with conn.transaction():
                    row, _ = await handlers.upsert_from_county(conn, upserts[c.verdict.index], c.event.source)
                c.verdict.resident_id = str(row["id"])
            except Problem as exc:
                await _unclaim(conn, c)
                c.verdict.reject(exc.field or "data", exc.detail)
            continue
        if c.event.type == FAMILY_BED and resident_id:
            family_beds.append(uuid.UUID(resident_id))
        envelope = forward_envelope(c, resident_id, traceparent, now_iso)
        forwards.append((envelope["id"], INGEST.name, forward_key(c, resident_id), orjson.dumps(envelope), None))
    if family_beds:
        await handlers.establish_family_beds(conn, family_beds, "registry/ingest")
    await add_rows(conn, forwards)
    return results


async def _resolve_residents(conn: asyncpg.Connection, checked: list[Checked]) -> dict[str, asyncpg.Record]:
    ids = list({uuid.UUID(c.resident_ref) for c in checked if c.resident_ref})
    numbers = list({c.id_number for c in checked if c.id_number and c.event.type != RESIDENT_UPSERTED})
    if not ids and not numbers:
        return {}
    rows = await conn.fetch(
        "SELECT id, id_number, county_code FROM residents WHERE id = ANY($1::uuid[]) OR id_number = ANY($2::text[])",
        ids, numbers)
    found: dict[str, asyncpg.Record] = {}
    for row in rows:
        found[str(row["id"])] = row
        found[row["id_number"]] = row
    return found


async def _claim(conn: asyncpg.Connection, items: list[Checked]) -> set[tuple[str, str]]:
    """Record (source, id) of each event; what was recorded before is a repeat."""
    if not items:
        return set()
    rows = await conn.fetch(
        "INSERT INTO ingest_events (source, event_id, county_code) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING RETURNING source, event_id",
        [c.event.source for c in items], [c.event.id for c in items], [c.event.countycode for c in items])
    return {(r["source"], r["event_id"]) for r in rows}


async def _unclaim(conn: asyncpg.Connection, c: Checked) -> None:
    await conn.execute("DELETE FROM ingest_events WHERE source = $1 AND event_id = $2", c.event.source, c.event.id)
