"""Folding a batch of events into reporting's tables in one transaction; the changed figures
(absolute values) come back as one delta with the next stream sequence number."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import asyncpg
from pydantic import BaseModel

from services.reporting.domain.folding import ResidentState, accumulate, apply_event
from shared.events.envelope import CloudEvent
from shared.messaging.consumer import Unprocessable
from shared.regions import load_counties

RESIDENT_TYPES = frozenset({
    "eldercare.resident.registered.v1", "eldercare.resident.updated.v1", "eldercare.resident.assessed.v1",
    "eldercare.resident.deceased.v1", "eldercare.resident.transferred.v1",
})
FACILITY = "eldercare.county.facility.reported.v1"
TRAINING = "eldercare.county.training.recorded.v1"
INGEST_TYPES = frozenset({FACILITY, TRAINING, "eldercare.county.device.sos.v1", "eldercare.county.device.fall.v1",
                          "eldercare.county.device.vitals.v1", "eldercare.county.device.activity.v1",
                          "eldercare.county.visit.logged.v1", "eldercare.county.family_bed.established.v1"})
FOLDED_TYPES = RESIDENT_TYPES | INGEST_TYPES


@dataclass(slots=True)
class Delta:
    """What changed in one committed batch, as new absolute values (a client can apply it twice)."""

    seq: int
    counts: list[dict] = field(default_factory=list)
    facilities: list[dict] = field(default_factory=list)
    training: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"seq": self.seq, "counts": self.counts, "facilities": self.facilities, "training": self.training}


_KNOWN_COUNTIES = frozenset(load_counties())


def _county_of(event: CloudEvent, data: BaseModel) -> str:
    resident = getattr(data, "resident", None)
    county = resident.county_code if resident is not None else (getattr(data, "county_code", None) or event.countycode)
    if county not in _KNOWN_COUNTIES:
        raise Unprocessable(f"unknown county {county!r}: not in the task list")
    return county


async def fold_batch(conn: asyncpg.Connection, events: list[tuple[CloudEvent, BaseModel]]) -> Delta | None:
    """Apply resident, facility and training events; return the delta, or None if nothing changed."""
    counter: dict = {}
    touched: dict[str, ResidentState] = {}
    facilities: dict[tuple[str, str], tuple] = {}
    trainees: Counter = Counter()
    sessions: Counter = Counter()
    activity: Counter = Counter()
    resident_ids = {_resident_id(e, d) for e, d in events if e.type in RESIDENT_TYPES}
    states = await _load_states(conn, resident_ids)
    for event, data in events:
        county = _county_of(event, data)
        if event.type in RESIDENT_TYPES:
            rid = _resident_id(event, data)
            new = apply_event(states.get(rid), event.type, data)
            if new is None:
                continue
            accumulate(counter, states.get(rid), new)
            states[rid] = touched[rid] = new
        elif event.type == FACILITY:
            facilities[(county, data.facility_id)] = (county, data.facility_id, data.facility_type, data.name,
                                                      data.beds, data.nursing_beds, data.occupied,
                                                      event.time or datetime.now(timezone.utc))
        elif event.type == TRAINING:
            trainees[county] += data.trainees
            sessions[county] += 1
        if event.type in INGEST_TYPES:
            activity[county] += 1
    counter = {k: v for k, v in counter.items() if v}
    if not (counter or facilities or trainees or activity or touched):
        return None
    await _save_states(conn, touched)
    result = Delta(seq=await conn.fetchval("UPDATE stream_state SET seq = seq + 1 WHERE id = 1 RETURNING seq"))
    result.counts = await _apply_counts(conn, counter)
    result.facilities = await _save_facilities(conn, list(facilities.values()))
    result.training = await _add_training(conn, trainees, sessions)
    if activity:
        await conn.execute(
            "INSERT INTO county_activity (county_code, events, last_event_at) "
            "SELECT c, n, now() FROM unnest($1::text[], $2::bigint[]) AS t(c, n) "
            "ON CONFLICT (county_code) DO UPDATE SET events = county_activity.events + EXCLUDED.events, "
            "last_event_at = now()", list(activity), list(activity.values()))
    return result


def _resident_id(event: CloudEvent, data: BaseModel) -> str:
    resident = getattr(data, "resident", None)
    return str(resident.resident_id if resident is not None else getattr(data, "resident_id", event.subject))


async def _load_states(conn: asyncpg.Connection, ids: set[str]) -> dict[str, ResidentState]:
    if not ids:
        return {}
    rows = await conn.fetch("SELECT * FROM residents WHERE resident_id = ANY($1::text[]::uuid[])", list(ids))
    return {str(r["resident_id"]): ResidentState(
        resident_id=str(r["resident_id"]), county_code=r["county_code"], birth_date=r["birth_date"],
        gender=r["gender"], living_arrangement=r["living_arrangement"], categories=tuple(r["categories"]),
        ability_level=r["ability_level"], status=r["status"], family_bed=r["family_bed"], version=r["version"],
    ) for r in rows}


async def _save_states(conn: asyncpg.Connection, states: dict[str, ResidentState]) -> None:
    if not states:
        return
    s = list(states.values())
    await conn.execute(
        """INSERT INTO residents (resident_id, county_code, birth_date, gender, living_arrangement, categories,
               ability_level, status, family_bed, version)
           SELECT r.id::uuid, r.county, r.birth, r.gender, r.living,
                  CASE WHEN r.cats = '' THEN '{}'::text[] ELSE string_to_array(r.cats, ',') END,
                  r.level, r.status, r.bed, r.version
           FROM unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::text[], $6::text[], $7::smallint[],
                       $8::text[], $9::boolean[], $10::integer[])
                AS r(id, county, birth, gender, living, cats, level, status, bed, version)
           ON CONFLICT (resident_id) DO UPDATE SET county_code = EXCLUDED.county_code,
               birth_date = EXCLUDED.birth_date, gender = EXCLUDED.gender,
               living_arrangement = EXCLUDED.living_arrangement, categories = EXCLUDED.categories,
               ability_level = EXCLUDED.ability_level, status = EXCLUDED.status,
               family_bed = EXCLUDED.family_bed, version = EXCLUDED.version""",
        [x.resident_id for x in s], [x.county_code for x in s], [x.birth_date for x in s],
        [x.gender for x in s], [x.living_arrangement for x in s], [",".join(x.categories) for x in s],
        [x.ability_level for x in s], [x.status for x in s], [x.family_bed for x in s], [x.version for x in s],
    )


async def _apply_counts(conn: asyncpg.Connection, counter: dict) -> list[dict]:
    if not counter:
        return []
    keys = list(counter)
    rows = await conn.fetch(
        "INSERT INTO agg_counts (county_code, dim, bucket, n) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
        "ON CONFLICT (county_code, dim, bucket) DO UPDATE SET n = agg_counts.n + EXCLUDED.n "
        "RETURNING county_code, dim, bucket, n",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [counter[k] for k in keys])
    return [{"county": r["county_code"], "dim": r["dim"], "bucket": r["bucket"], "value": r["n"]} for r in rows]


async def _save_facilities(conn: asyncpg.Connection, rows: list[tuple]) -> list[dict]:
    if not rows:
        return []
    cols = list(zip(*rows))
    saved = await conn.fetch(
        "INSERT INTO facilities (county_code, facility_id, facility_type, name, beds, nursing_beds, occupied, "
        "reported_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], "
        "$7::int[], $8::timestamptz[]) ON CONFLICT (county_code, facility_id) DO UPDATE SET "
        "facility_type = EXCLUDED.facility_type, name = EXCLUDED.name, beds = EXCLUDED.beds, "
        "nursing_beds = EXCLUDED.nursing_beds, occupied = EXCLUDED.occupied, reported_at = EXCLUDED.reported_at "
        "WHERE facilities.reported_at <= EXCLUDED.reported_at RETURNING *", *[list(c) for c in cols])
    return [{"county": r["county_code"], "facility_id": r["facility_id"], "facility_type": r["facility_type"],
             "name": r["name"], "beds": r["beds"], "nursing_beds": r["nursing_beds"], "occupied": r["occupied"]}
            for r in saved]


async def _add_training(conn: asyncpg.Connection, trainees: Counter, sessions: Counter) -> list[dict]:
    if not trainees and not sessions:
        return []
    counties = sorted(set(trainees) | set(sessions))
    rows = await conn.fetch(
        "INSERT INTO training (county_code, trainees, sessions) SELECT * FROM unnest($1::text[], $2::bigint[], "
        "$3::bigint[]) ON CONFLICT (county_code) DO UPDATE SET trainees = training.trainees + EXCLUDED.trainees, "
        "sessions = training.sessions + EXCLUDED.sessions RETURNING county_code, trainees, sessions",
        counties, [trainees[c] for c in counties], [sessions[c] for c in counties])
    return [{"county": r["county_code"], "trainees": r["trainees"], "sessions": r["sessions"]} for r in rows]

