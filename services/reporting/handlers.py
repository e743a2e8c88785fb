"""Folding a batch of events into reporting's tables in one transaction; the changed figures
(absolute values) come back as one delta with the next stream sequence number."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import asyncpg
from pydantic import BaseModel

from services.reporting import service_store
from services.reporting.domain.folding import ResidentState, accumulate, apply_event, with_city
from services.reporting.domain.services import apply_alert_event, apply_order_event
from shared.events.alerts import ALERT_EVENTS
from shared.events.envelope import CloudEvent
from shared.events.orders import ORDER_EVENTS
from shared.messaging.consumer import Unprocessable
from shared.regions import load_counties

RESIDENT_TYPES = frozenset({
    "eldercare.resident.registered.v1", "eldercare.resident.updated.v1", "eldercare.resident.assessed.v1",
    "eldercare.resident.deceased.v1", "eldercare.resident.transferred.v1", "eldercare.resident.snapshot.v1",
})
FACILITY = "eldercare.county.facility.reported.v1"
TRAINING = "eldercare.county.training.recorded.v1"
INGEST_TYPES = frozenset({FACILITY, TRAINING, "eldercare.county.device.sos.v1", "eldercare.county.device.fall.v1",
                          "eldercare.county.device.vitals.v1", "eldercare.county.device.activity.v1",
                          "eldercare.county.visit.logged.v1", "eldercare.county.family_bed.established.v1"})
ORDER_TYPES = frozenset(ORDER_EVENTS)
ALERT_TYPES = frozenset(ALERT_EVENTS)
FOLDED_TYPES = RESIDENT_TYPES | INGEST_TYPES | ORDER_TYPES | ALERT_TYPES
# Whole snapshots with a version: applying one the projection already holds (same or newer
# version) changes nothing, so these need no inbox row to be idempotent.
VERSIONED_TYPES = frozenset({"eldercare.resident.registered.v1", "eldercare.resident.updated.v1",
                             "eldercare.resident.transferred.v1", "eldercare.resident.snapshot.v1"})


@dataclass(slots=True)
class Delta:
    """What changed in one committed batch, as new absolute values (a client can apply it twice)."""

    seq: int
    counts: list[dict] = field(default_factory=list)
    facilities: list[dict] = field(default_factory=list)
    training: list[dict] = field(default_factory=list)
    # The order and alert figures of each scope a batch touched: {"county", "orders", "alerts"}.
    services: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"seq": self.seq, "counts": self.counts, "facilities": self.facilities, "training": self.training,
                "services": self.services}


_KNOWN_COUNTIES = frozenset(load_counties())


def _county_of(event: CloudEvent, data: BaseModel) -> str:
    resident = getattr(data, "resident", None)
    county = resident.county_code if resident is not None else (getattr(data, "county_code", None) or event.countycode)
    if county not in _KNOWN_COUNTIES:
        raise Unprocessable(f"unknown county {county!r}: not in the task list")
    return county


@dataclass(slots=True)
class _Fold:
    """A batch folded in memory, before one write per table."""

    counts: dict = field(default_factory=dict)
    touched: dict[str, ResidentState] = field(default_factory=dict)
    facilities: dict[tuple[str, str], tuple] = field(default_factory=dict)
    training: dict[str, tuple[str, int]] = field(default_factory=dict)  # event id -> (county, trainees)
    activity: Counter = field(default_factory=Counter)
    # When each county's platform last posted (the events' own time, so a rebuild from the log
    # does not make every platform look live).
    heard: dict[str, datetime] = field(default_factory=dict)
    orders: dict = field(default_factory=dict)  # order id -> OrderFacts
    alerts: dict = field(default_factory=dict)  # alert id -> AlertFacts

    def changed(self) -> bool:
        return bool(self.counts or self.facilities or self.training or self.activity or self.touched
                    or self.orders or self.alerts)


async def fold_batch(conn: asyncpg.Connection, events: list[tuple[CloudEvent, BaseModel]]) -> Delta | None:
    """Apply resident, facility and training events; return the delta, or None if nothing changed.
    Resident snapshots are applied by version against the projection, so a redelivered one changes
    nothing even without an inbox row (see worker.py); additive figures keep their inbox rows."""
    rids = [_resident_id(e, d) if e.type in RESIDENT_TYPES else None for e, d in events]
    states = await _load_states(conn, {r for r in rids if r is not None})
    orders = await service_store.load_orders(conn, {str(d.order_id) for e, d in events if e.type in ORDER_TYPES})
    alerts = await service_store.load_alerts(conn, {str(d.alert_id) for e, d in events if e.type in ALERT_TYPES})
    fold = _fold(events, rids, states, orders, alerts)
    if not fold.changed():
        return None
    return await _write(conn, fold)


def _fold(events: list[tuple[CloudEvent, BaseModel]], rids: list[str | None],
          states: dict[str, ResidentState], orders: dict | None = None, alerts: dict | None = None) -> _Fold:
    fold = _Fold()
    orders = {} if orders is None else orders
    alerts = {} if alerts is None else alerts
    for (event, data), rid in zip(events, rids):
        county = _county_of(event, data)
        if event.type in ORDER_TYPES:
            key = str(data.order_id)
            if (facts := apply_order_event(orders.get(key), event.type, data, event.time)) is not None:
                orders[key] = fold.orders[key] = facts
            continue
        if event.type in ALERT_TYPES:
            key = str(data.alert_id)
            if (facts := apply_alert_event(alerts.get(key), event.type, data)) is not None:
                alerts[key] = fold.alerts[key] = facts
            continue
        if rid is not None:
            old = states.get(rid)
            new = apply_event(old, event.type, data)
            if new is not None:
                accumulate(fold.counts, old, new)
                states[rid] = fold.touched[rid] = new
            continue
        if event.type == FACILITY:
            fold.facilities[(county, data.facility_id)] = (
                county, data.facility_id, data.facility_type, data.name, data.beds, data.nursing_beds,
                data.occupied, event.time or datetime.now(timezone.utc))
        elif event.type == TRAINING:
            fold.training[event.id] = (county, data.trainees)
        fold.activity[county] += 1
        at = event.time or datetime.now(timezone.utc)
        at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        if county not in fold.heard or at > fold.heard[county]:
            fold.heard[county] = at
    fold.counts = with_city(fold.counts)
    return fold


async def _write(conn: asyncpg.Connection, fold: _Fold) -> Delta:
    await _save_states(conn, fold.touched)
    result = Delta(seq=await conn.fetchval("UPDATE stream_state SET seq = seq + 1 WHERE id = 1 RETURNING seq"))
    result.counts = await _apply_counts(conn, fold.counts)
    result.facilities = await _save_facilities(conn, list(fold.facilities.values()))
    result.training = await _add_training(conn, fold.training)
    if fold.orders or fold.alerts:
        await service_store.save_orders(conn, fold.orders)
        await service_store.save_alerts(conn, fold.alerts)
        views = await service_store.refresh(conn, {f.county_code for f in (*fold.orders.values(),
                                                                            *fold.alerts.values())})
        result.services = [{"county": scope, **view} for scope, view in sorted(views.items())]
    if fold.activity:
        await conn.execute(
            "INSERT INTO county_activity (county_code, events, last_event_at) "
            "SELECT c, n, least(at, now()) FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS t(c, n, at) "
            "ON CONFLICT (county_code) DO UPDATE SET events = county_activity.events + EXCLUDED.events, "
            "last_event_at = greatest(county_activity.last_event_at, EXCLUDED.last_event_at)",
            list(fold.activity), list(fold.activity.values()), [fold.heard[c] for c in fold.activity])
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
        township=r["township"], village=r["village"], family_doctor_contract=r["family_doctor_contract"],
    ) for r in rows}


async def _save_states(conn: asyncpg.Connection, states: dict[str, ResidentState]) -> None:
    if not states:
        return
    # A state is a tuple in column order: zip gives the columns at C speed.
    columns = map(list, zip(*states.values()))
    (ids, counties, births, genders, livings, cats, levels, statuses, beds, versions, townships, villages,
     doctors) = columns
    categories = [",".join(c) for c in cats]
    await conn.execute(
        """INSERT INTO residents (resident_id, county_code, birth_date, gender, living_arrangement, categories,
               ability_level, status, family_bed, version, township, village, family_doctor_contract)
           SELECT r.id::uuid, r.county, r.birth, r.gender, r.living,
                  CASE WHEN r.cats = '' THEN '{}'::text[] ELSE string_to_array(r.cats, ',') END,
                  r.level, r.status, r.bed, r.version, r.township, r.village, r.doctor
           FROM unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::text[], $6::text[], $7::smallint[],
                       $8::text[], $9::boolean[], $10::integer[], $11::text[], $12::text[], $13::boolean[])
                AS r(id, county, birth, gender, living, cats, level, status, bed, version, township, village, doctor)
           ON CONFLICT (resident_id) DO UPDATE SET county_code = EXCLUDED.county_code,
               birth_date = EXCLUDED.birth_date, gender = EXCLUDED.gender,
               living_arrangement = EXCLUDED.living_arrangement, categories = EXCLUDED.categories,
               ability_level = EXCLUDED.ability_level, status = EXCLUDED.status,
               family_bed = EXCLUDED.family_bed, version = EXCLUDED.version, township = EXCLUDED.township,
               village = EXCLUDED.village, family_doctor_contract = EXCLUDED.family_doctor_contract""",
        ids, counties, births, genders, livings, categories, levels, statuses, beds, versions, townships, villages,
        doctors)


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


async def _add_training(conn: asyncpg.Connection, records: dict[str, tuple[str, int]]) -> list[dict]:
    """Add the records not counted before (by event id: a re-published record arrives with its first
    id, possibly after the inbox has forgotten it) to the county totals."""
    if not records:
        return []
    rows = await conn.fetch(
        "WITH fresh AS (INSERT INTO training_records (event_id, county_code, trainees) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING "
        "RETURNING county_code, trainees) "
        "INSERT INTO training (county_code, trainees, sessions) SELECT county_code, sum(trainees), count(*) "
        "FROM fresh GROUP BY county_code ON CONFLICT (county_code) DO UPDATE SET "
        "trainees = training.trainees + EXCLUDED.trainees, sessions = training.sessions + EXCLUDED.sessions "
        "RETURNING county_code, trainees, sessions",
        list(records), [c for c, _ in records.values()], [t for _, t in records.values()])
    return [{"county": r["county_code"], "trainees": r["trainees"], "sessions": r["sessions"]} for r in rows]
