"""Use cases: one function per consumed batch or command, given a connection inside the caller's
transaction. Every alert step is written with its outbox event, its webhook deliveries and a wake-up
of the live stream in that same transaction (`flush_steps`)."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import asyncpg
from pydantic import BaseModel

from services.alerts.domain import care, detection, geofence, lifecycle, notify, orders
from services.alerts.domain.detection import Finding, Silence
from services.alerts.domain.rules import Rules
from services.alerts.store import SCHEMA, STREAM_CHANNEL, RuleBook, rule_book
from shared.auth import Principal
from shared.events.alerts import ALERT_EVENTS
from shared.events.orders import ORDER_EVENTS
from shared.events.envelope import CloudEvent, make_event
from shared.messaging.outbox import add_events
from shared.problems import NotFound

SOURCE = "alerts"
STEP_LOCK = "alerts:steps"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


# ------------------------------------------------------------------ steps (timeline + outbox)

@dataclass(slots=True)
class Step:
    alert_id: uuid.UUID
    county_code: str
    resident_id: uuid.UUID | None
    severity: str
    silenced: bool
    kind: str  # raised, updated, acknowledged, dispatched, escalated, resolved
    at: datetime
    actor: str | None
    data: dict = field(default_factory=dict)


async def flush_steps(conn: asyncpg.Connection, steps: list[Step]) -> list[int]:
    """Write the steps: timeline rows, outbox events, webhook deliveries, a NOTIFY for the stream.
    Under one transaction-scoped advisory lock, so sequence numbers commit in the order they were
    drawn and a stream reader that has seen n has seen everything below n."""
    if not steps:
        return []
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", STEP_LOCK)
    events: list[CloudEvent] = []
    for s in steps:
        event_type = f"eldercare.alert.{s.kind}.v1"
        data = ALERT_EVENTS[event_type].model_validate({
            "alert_id": str(s.alert_id), "resident_id": str(s.resident_id) if s.resident_id else None,
            "county_code": s.county_code, "at": s.at, **s.data})
        events.append(make_event(event_type, SOURCE, data, subject=str(s.alert_id), countycode=s.county_code))
    seqs = await conn.fetch(
        "INSERT INTO alert_steps (event_id, alert_id, county_code, kind, at, actor, data) "
        "SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], "
        "$7::jsonb[]) RETURNING seq",
        [e.id for e in events], [s.alert_id for s in steps], [s.county_code for s in steps],
        [s.kind for s in steps], [s.at for s in steps], [s.actor for s in steps], [s.data for s in steps])
    await add_events(conn, events, SCHEMA)
    # A silenced alert is recorded and shown, but nobody is called about it.
    loud = [(e, s) for e, s in zip(events, steps) if not s.silenced]
    if loud:
        await conn.execute(
            "INSERT INTO deliveries (subscription_id, msg_id, payload) "
            "SELECT sub.id, e.id, e.payload FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) "
            "AS e(id, county, severity, payload) JOIN subscriptions sub ON sub.active "
            "AND (sub.county_code IS NULL OR sub.county_code = e.county) AND e.severity = ANY(sub.severities) "
            "ON CONFLICT DO NOTHING",
            [e.id for e, _ in loud], [s.county_code for _, s in loud], [s.severity for _, s in loud],
            [e.to_json() for e, _ in loud])
    await conn.execute("SELECT pg_notify($1, '')", STREAM_CHANNEL)
    return [r["seq"] for r in seqs]


# ------------------------------------------------------------------ raising and joining

@dataclass(slots=True)
class Context:
    """What one transaction's detections share: the time, the rules, the active silences, the steps."""

    now: datetime
    book: RuleBook
    silences: list[Silence]
    steps: list[Step] = field(default_factory=list)
    # SOS and fall alerts opened in this transaction: (resident, county, cause, first seen, incident).
    incidents: list[tuple] = field(default_factory=list)
    raised: int = 0
    joined: int = 0


async def context(conn: asyncpg.Connection) -> Context:
    now = utcnow()
    rows = await conn.fetch(
        "SELECT id, county_code, cause, resident_id, device_id, starts_at, expires_at FROM silences "
        "WHERE revoked_at IS NULL AND expires_at > $1", now)
    silences = [Silence(r["county_code"], r["expires_at"], r["starts_at"], r["cause"], r["resident_id"],
                        r["device_id"], r["id"]) for r in rows]
    return Context(now, await rule_book(conn), silences)


@dataclass(slots=True)
class Pending:
    """A finding waiting for its batch's one write (`raise_or_join_many`)."""

    finding: Finding
    county: str
    subject: str | None
    device_id: str | None
    at: datetime
    event_id: str | None


@dataclass(slots=True)
class _Key:
    """The findings of one batch for one dedupe key: all of them (joining an alert already open),
    and those from the first that raises on (opening one: a cancel before it has nothing to note)."""

    county: str
    subject: str | None
    cause: str
    n: int = 0
    last: datetime | None = None
    note: bool = False
    first: Pending | None = None
    n_from_first: int = 0
    last_from_first: datetime | None = None
    note_from_first: bool = False

    def add(self, p: Pending) -> None:
        cancel = p.finding.action == "cancel"
        self.n += 1
        self.last = p.at if self.last is None or p.at > self.last else self.last
        self.note = self.note or cancel
        if self.first is None and not cancel:
            self.first = p
        if self.first is not None:
            self.n_from_first += 1
            self.last_from_first = (p.at if self.last_from_first is None or p.at > self.last_from_first
                                    else self.last_from_first)
            self.note_from_first = self.note_from_first or cancel


CANCEL_NOTE = "cancelled by the wearer"

JOIN = ("UPDATE alerts a SET count = a.count + q.n, last_seen_at = greatest(a.last_seen_at, q.at), "
        "details = CASE WHEN q.note IS NULL THEN a.details ELSE a.details || jsonb_build_object('note', q.note) END "
        "FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[]) AS q(key, n, at, note) "
        "WHERE a.dedupe_key = q.key AND a.status <> 'resolved' "
        "RETURNING a.id, a.dedupe_key, a.count, a.severity, a.silence_id, a.resident_id")


async def raise_or_join(conn: asyncpg.Connection, ctx: Context, finding: Finding, *, county: str,
                        subject: str | None, device_id: str | None, at: datetime, event_id: str | None) -> None:
    """Open an alert for the finding, or join the open one for the same resident and cause."""
    await raise_or_join_many(conn, ctx, [Pending(finding, county, subject, device_id, at, event_id)])


async def raise_or_join_many(conn: asyncpg.Connection, ctx: Context, pending: list[Pending]) -> None:
    """A batch's findings, in their order, in two statements: every repeat of a resident and cause
    whose alert is open joins it in one UPDATE (count, last seen, the wearer's cancel noted) and
    writes one `updated` step however many repeats it took; the rest open alerts in one INSERT.
    A key inserted meanwhile by another transaction (the alarm lane, the scheduler) joins that one."""
    if not pending:
        return
    groups: dict[str, _Key] = {}
    for p in pending:
        key = f"{p.county}|{p.subject or p.device_id or '-'}|{p.finding.cause}"
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Key(p.county, p.subject, p.finding.cause)
        g.add(p)
    keys = sorted(groups)
    joined = await _join(conn, ctx, groups, keys, whole=True)
    fresh = [k for k in keys if k not in joined and groups[k].first is not None]
    if fresh:
        lost = await _open(conn, ctx, groups, fresh)
        if lost:
            await _join(conn, ctx, groups, lost, whole=False)


async def _join(conn: asyncpg.Connection, ctx: Context, groups: dict[str, _Key], keys: list[str], *,
                whole: bool) -> set[str]:
    def part(g: _Key) -> tuple[int, datetime | None, bool]:
        return (g.n, g.last, g.note) if whole else (g.n_from_first, g.last_from_first, g.note_from_first)

    rows = await conn.fetch(JOIN, keys, [part(groups[k])[0] for k in keys], [part(groups[k])[1] for k in keys],
                            [CANCEL_NOTE if part(groups[k])[2] else None for k in keys])
    for row in rows:
        g = groups[row["dedupe_key"]]
        n, _, note = part(g)
        ctx.joined += n
        ctx.steps.append(Step(row["id"], g.county, row["resident_id"], row["severity"], row["silence_id"] is not None,
                              "updated", ctx.now, None, {"count": row["count"], "note": CANCEL_NOTE if note else None}))
    return {row["dedupe_key"] for row in rows}


async def _open(conn: asyncpg.Connection, ctx: Context, groups: dict[str, _Key], keys: list[str]) -> list[str]:
    """Insert the new alerts; the keys another transaction opened first (they join it instead)."""
    cols: tuple[list, ...] = tuple([] for _ in range(17))
    made: dict[uuid.UUID, tuple[str, dict]] = {}
    for key in keys:
        g = groups[key]
        first = g.first
        assert first is not None
        finding, county, subject, device_id = first.finding, g.county, first.subject, first.device_id
        resident_id = as_uuid(subject)
        rules, version = ctx.book.for_county(county)
        alert_id = uuid.uuid4()
        incident_id = await _incident_of(conn, ctx, finding.cause, county, resident_id, first.at, rules) or alert_id
        if finding.cause in detection.INCIDENT_CAUSES and resident_id is not None:
            ctx.incidents.append((resident_id, county, finding.cause, first.at, incident_id))
        silence = detection.silenced_by(ctx.silences, county, subject, device_id, finding.cause, first.at)
        escalate_at = None if silence else detection.escalation_due(finding.severity, ctx.now, rules)
        details = {**finding.details, **({"subject": subject} if subject and resident_id is None else {})}
        if g.note_from_first:
            details["note"] = CANCEL_NOTE
        row = (alert_id, county, resident_id, device_id, finding.cause, finding.severity, key, first.at,
               g.last_from_first, ctx.now, escalate_at, silence.id if silence else None, version, incident_id,
               details, first.event_id, g.n_from_first)
        for col, value in zip(cols, row):
            col.append(value)
        made[alert_id] = (key, {
            "severity": finding.severity, "cause": finding.cause, "details": finding.details, "rule_version": version,
            "incident_id": str(incident_id), "silenced": silence is not None, "escalate_at": escalate_at})
    inserted = {r["id"] for r in await conn.fetch(
        "INSERT INTO alerts (id, county_code, resident_id, device_id, cause, severity, dedupe_key, first_seen_at, "
        "last_seen_at, raised_at, escalate_at, silence_id, rule_version, incident_id, details, source_event_id, count) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], "
        "$8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::uuid[], $13::text[], "
        "$14::uuid[], $15::jsonb[], $16::text[], $17::int[]) "
        "ON CONFLICT (dedupe_key) WHERE status <> 'resolved' DO NOTHING RETURNING id", *cols)}
    lost = []
    for i, alert_id in enumerate(cols[0]):
        key, data = made[alert_id]
        if alert_id not in inserted:
            lost.append(key)
            continue
        g = groups[key]
        ctx.raised += 1
        ctx.joined += g.n_from_first - 1
        severity, silenced = cols[5][i], data["silenced"]
        ctx.steps.append(Step(alert_id, g.county, cols[2][i], severity, silenced, "raised", ctx.now, None, data))
        if g.n_from_first > 1:  # repeats in the same batch: one step for all of them
            ctx.steps.append(Step(alert_id, g.county, cols[2][i], severity, silenced, "updated", ctx.now, None, {
                "count": g.n_from_first, "note": CANCEL_NOTE if g.note_from_first else None}))
    return lost


async def _incident_of(conn: asyncpg.Connection, ctx: Context, cause: str, county: str,
                       resident_id: uuid.UUID | None, at: datetime, rules: Rules) -> uuid.UUID | None:
    """The incident an SOS or fall belongs to: that of the other one, if it is within the window."""
    if cause not in detection.INCIDENT_CAUSES or resident_id is None:
        return None
    for rid, other_county, other, first_seen, incident in reversed(ctx.incidents):  # not inserted yet
        if rid == resident_id and other_county == county and detection.same_incident(
                cause, other, first_seen, at, rules.incident_window_s):
            return incident
    rows = await conn.fetch(
        "SELECT cause, first_seen_at, incident_id FROM alerts WHERE resident_id = $1 AND county_code = $2 "
        "AND cause = ANY($3::text[]) AND first_seen_at > $4::timestamptz - make_interval(secs => $5::float8) ORDER BY first_seen_at DESC",
        resident_id, county, list(detection.INCIDENT_CAUSES), at, rules.incident_window_s)
    for r in rows:
        if detection.same_incident(cause, r["cause"], r["first_seen_at"], at, rules.incident_window_s):
            return r["incident_id"]
    return None


# ------------------------------------------------------------------ the ingest stream

READING_TYPES = frozenset({detection.VITALS_TYPE, detection.ACTIVITY, detection.LOCATION})
YIELD_EVERY = 250
ALARM_TYPES = frozenset({detection.SOS, detection.FALL, detection.ALARM})
INGEST_TYPES = frozenset(detection.DEVICE_TYPES | {detection.VISIT})


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(slots=True)
class _Known:
    county_code: str | None
    solitary: bool
    last_at: datetime | None
    last_id: str | None


def _ranges(rules: Rules) -> list[tuple[str, float, float]]:
    """(metric, low, high) for each vital sign with a range: a reading inside all of them, for a
    resident holding no out-of-range state, needs no hysteresis step."""
    inf = float("inf")
    return [(m, -inf if r.low is None else r.low, inf if r.high is None else r.high)
            for m, r in rules.vitals.items() if m in detection.VITALS]


async def apply_ingest(conn: asyncpg.Connection, items: list[tuple[CloudEvent, BaseModel]]) -> dict:
    """A batch of device and visit events: evaluated in order, the projection read once, the
    watermarks and vital-sign states written once. Readings carry no inbox row (they are many):
    one whose (time, id) is not after its resident's watermark is a redelivery and is skipped.
    The loop is the hot path (tens of thousands of readings a second): resident ids stay strings
    (PostgreSQL casts them), models are read through their __dict__, time bounds are per county."""
    ctx = await context(conn)
    ids = [s for s in {e.subject for e, _ in items} if s and _UUID.match(s)]
    known: dict[str, _Known] = {}
    states: dict[tuple[str, str], str] = {}
    if ids:
        for r in await conn.fetch(
                "SELECT q.id, r.county_code, r.living_arrangement, r.status, s.last_at, s.last_id "
                "FROM unnest($1::text[]) AS q(id) LEFT JOIN residents r ON r.resident_id = q.id::uuid "
                "LEFT JOIN signals s ON s.resident_id = q.id::uuid", ids):
            if r["county_code"] is not None or r["last_at"] is not None:
                known[r["id"]] = _Known(r["county_code"], r["status"] == "active"
                                        and r["living_arrangement"] in care.SOLITARY, r["last_at"], r["last_id"])
        if any(e.type == detection.VITALS_TYPE for e, _ in items):
            for r in await conn.fetch("SELECT resident_id::text AS id, metric, state FROM vital_states "
                                      "WHERE resident_id = ANY($1::text[]::uuid[])", ids):
                states[(r["id"], r["metric"])] = r["state"]
    located = list({e.subject for e, _ in items if e.type == detection.LOCATION and e.subject in known})
    zones = await _zones(conn, located) if located else {}
    touched_zones: dict[str, _ZoneState] = {}
    touched_states: dict[tuple[str, str], str] = {}
    signals: dict[str, tuple[datetime, str, str, bool]] = {}
    bounds: dict[str, tuple[Rules, datetime, datetime, list]] = {}
    pending: list[Pending] = []
    skipped = 0
    for n, (event, data) in enumerate(items, 1):
        if n % YIELD_EVERY == 0:
            # A batch of readings takes a while; the alarm lane (same process) gets its turn.
            await asyncio.sleep(0)
        county = event.countycode or ""
        hit = bounds.get(county)
        if hit is None:
            rules = ctx.book.for_county(county)[0]
            hit = bounds[county] = (rules, ctx.now + timedelta(seconds=rules.max_clock_skew_s),
                                    ctx.now - timedelta(seconds=rules.max_event_age_s), _ranges(rules))
        rules, latest, earliest, ranges = hit
        at = event.time or ctx.now
        subject = event.subject
        info = known.get(subject) if subject else None
        payload = data.__dict__
        device_id = payload.get("device_id")
        kind = event.type
        if kind == detection.VISIT:
            await raise_or_join_many(conn, ctx, pending)  # in order: the visit may close what they open
            pending.clear()
            await _visit_logged(conn, ctx, as_uuid(subject), data.model_dump(mode="json"), county)
            continue
        problem = None if earliest <= at <= latest else detection.time_problem(at, ctx.now, rules)
        if info is None or info.county_code is None:
            pending.append(Pending(Finding(detection.UNKNOWN_RESIDENT, "warning",
                                           {"device_id": device_id, "event_type": kind}),
                                   county, subject, device_id, at, event.id))
        if kind in READING_TYPES:
            if info is not None and info.last_at is not None and (at, event.id) <= (info.last_at, info.last_id or ""):
                skipped += 1
                continue
            if problem is not None:
                pending.append(Pending(Finding("bad_timestamp", "warning", {"device_id": device_id,
                                                                            "reason": problem}),
                                       county, subject, device_id, ctx.now, event.id))
                continue
        # Only readings move the watermark: alarms may be applied ahead of earlier readings by
        # the alarm lane (worker.py), and must not make those look like redeliveries.
        if kind in READING_TYPES and info is not None and info.county_code is not None:
            if info.last_at is None or (at, event.id) > (info.last_at, info.last_id or ""):
                info.last_at, info.last_id = at, event.id
                signals[subject] = (at, event.id, county, info.solitary)  # type: ignore[index]
        if kind == detection.ACTIVITY:
            continue
        if kind == detection.LOCATION:
            held = zones.get(subject) if subject else None
            if held is not None and await _located(conn, ctx, pending, held, payload, rules, county=county,
                                                   subject=subject, at=at, event_id=event.id):
                touched_zones[subject] = held  # type: ignore[index]
            continue
        findings: list[Finding]
        if kind == detection.VITALS_TYPE:
            # Most readings are in range for a resident with no vital sign out of it: nothing to do.
            for metric, low, high in ranges:
                value = payload.get(metric)
                if value is not None and (not low <= value <= high or (subject, metric) in states):
                    break
            else:
                continue
            current = {m: states.get((subject, m), "normal") for m in detection.VITALS if payload.get(m) is not None}
            findings, changed = detection.vitals_findings(payload, rules, current)  # type: ignore[arg-type]
            for metric, state in changed.items():
                states[(subject, metric)] = state  # type: ignore[index]
                touched_states[(subject, metric)] = state  # type: ignore[index]
        else:
            findings = detection.device_findings(kind, payload, rules)
        for finding in findings:
            if problem is not None:
                finding = Finding(finding.cause, finding.severity, {**finding.details, "time_problem": problem},
                                  finding.action)
            pending.append(Pending(finding, county, subject, device_id, at if problem is None else ctx.now, event.id))
    await raise_or_join_many(conn, ctx, pending)
    if signals:
        rows = list(signals.items())
        await conn.execute(
            "INSERT INTO signals (resident_id, county_code, last_at, last_id, solitary) "
            "SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::bool[]) "
            "ON CONFLICT (resident_id) DO UPDATE SET last_at = EXCLUDED.last_at, last_id = EXCLUDED.last_id, "
            "solitary = EXCLUDED.solitary WHERE (signals.last_at, signals.last_id) < (EXCLUDED.last_at, EXCLUDED.last_id)",
            [k for k, _ in rows], [v[2] for _, v in rows], [v[0] for _, v in rows], [v[1] for _, v in rows],
            [v[3] for _, v in rows])
    if touched_states:
        cleared = [(k, m) for (k, m), s in touched_states.items() if s == "normal"]
        held = [(k, m, s) for (k, m), s in touched_states.items() if s != "normal"]
        if cleared:
            await conn.execute("DELETE FROM vital_states v USING unnest($1::text[]::uuid[], $2::text[]) AS q(id, metric) "
                               "WHERE v.resident_id = q.id AND v.metric = q.metric",
                               [k for k, _ in cleared], [m for _, m in cleared])
        if held:
            await conn.execute(
                "INSERT INTO vital_states (resident_id, metric, state) "
                "SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) "
                "ON CONFLICT (resident_id, metric) DO UPDATE SET state = EXCLUDED.state",
                [k for k, _, _ in held], [m for _, m, _ in held], [s for _, _, s in held])
    if touched_zones:
        z = list(touched_zones.items())
        await conn.execute(
            "INSERT INTO geofence_states (resident_id, state, streak, distance_m, last_fix_at, zone_source) "
            "SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::int[], $4::float8[], $5::timestamptz[], "
            "$6::text[]) ON CONFLICT (resident_id) DO UPDATE SET state = EXCLUDED.state, streak = EXCLUDED.streak, "
            "distance_m = EXCLUDED.distance_m, last_fix_at = EXCLUDED.last_fix_at, zone_source = EXCLUDED.zone_source",
            [k for k, _ in z], [v.state for _, v in z], [v.streak for _, v in z], [v.distance_m for _, v in z],
            [v.last_fix_at for _, v in z], [v.zone.source if v.zone else None for _, v in z])
    seqs = await flush_steps(conn, ctx.steps)
    return {"raised": ctx.raised, "joined": ctx.joined, "skipped": skipped, "seqs": seqs}


@dataclass(slots=True)
class _ZoneState:
    """A located resident's zone inputs (configured zone, home, categories) and zone state."""

    configured: geofence.Zone | None
    home_lat: float | None
    home_lon: float | None
    categories: tuple[str, ...]
    state: str = "inside"
    streak: int = 0
    distance_m: float | None = None
    last_fix_at: datetime | None = None
    zone: geofence.Zone | None = None


async def _zones(conn: asyncpg.Connection, ids: list[str]) -> dict[str, _ZoneState]:
    out: dict[str, _ZoneState] = {}
    for r in await conn.fetch(
            "SELECT q.id, r.home_lat, r.home_lon, r.categories, g.lat, g.lon, g.radius_m, g.device_id, "
            "s.state, s.streak, s.last_fix_at FROM unnest($1::text[]) AS q(id) "
            "LEFT JOIN residents r ON r.resident_id = q.id::uuid LEFT JOIN geofences g ON g.resident_id = q.id::uuid "
            "LEFT JOIN geofence_states s ON s.resident_id = q.id::uuid", ids):
        configured = None if r["lat"] is None else geofence.Zone(r["lat"], r["lon"], r["radius_m"], "configured",
                                                                 r["device_id"])
        out[r["id"]] = _ZoneState(configured, r["home_lat"], r["home_lon"], tuple(r["categories"] or ()),
                                  r["state"] or "inside", r["streak"] or 0, None, r["last_fix_at"])
    return out


async def _located(conn: asyncpg.Connection, ctx: Context, pending: list[Pending], held: _ZoneState, payload: dict,
                   rules: Rules, *, county: str, subject: str, at: datetime, event_id: str) -> bool:
    """A position fix against the resident's safe zone: leaving raises (once per excursion), coming
    back resolves the open geofence alert; fixes older than the last one change nothing. False when
    the fix was not evaluated (no zone applies), so no zone state is written for it."""
    zone = geofence.zone_for(held.configured, held.home_lat, held.home_lon, held.categories, rules.geofence)
    device_id = payload.get("device_id")
    if zone is None or (zone.device_id is not None and zone.device_id != device_id):
        return False
    if held.last_fix_at is not None and at < held.last_fix_at:
        return False
    if held.zone is not None and held.zone != zone:
        held.state, held.streak = "inside", 0
    lat, lon, accuracy = payload["lat"], payload["lon"], payload.get("accuracy_m")
    result = geofence.step(zone, held.state, held.streak, lat, lon, accuracy, rules.geofence)  # type: ignore[arg-type]
    held.state, held.streak, held.distance_m, held.last_fix_at, held.zone = (
        result.state, result.streak, round(result.distance_m, 1), at, zone)
    if result.action == "raise":
        pending.append(Pending(Finding(geofence.CAUSE, rules.geofence.severity, {
            "device_id": device_id, "lat": lat, "lon": lon, "accuracy_m": accuracy,
            "distance_m": round(result.distance_m), "radius_m": zone.radius_m, "zone": zone.source}),
            county, subject, device_id, at, event_id))
    elif result.action == "clear":
        await raise_or_join_many(conn, ctx, pending)  # in order: this may close an alert they open
        pending.clear()
        alert = await conn.fetchrow("SELECT id FROM alerts WHERE dedupe_key = $1 AND status <> 'resolved' FOR UPDATE",
                                    f"{county}|{subject}|{geofence.CAUSE}")
        if alert is not None:
            await _transition(conn, ctx, alert["id"], "resolve", "system", {
                "resolution": "returned_to_zone",
                "note": f"back in the zone: {round(result.distance_m)} m from its centre"})
    return True


async def _visit_logged(conn: asyncpg.Connection, ctx: Context, rid: uuid.UUID | None, payload: dict,
                        county: str) -> None:
    """A visit restarts the resident's visit clock and closes an open overdue-visit alert."""
    if rid is None:
        return
    row = await conn.fetchrow("SELECT * FROM residents WHERE resident_id = $1 FOR UPDATE", rid)
    if row is None:
        return
    visited = datetime.fromisoformat(payload["at"])
    if visited.tzinfo is None:
        visited = visited.replace(tzinfo=timezone.utc)
    if row["last_visit_at"] is not None and visited <= row["last_visit_at"]:
        return
    rules, _ = ctx.book.for_county(row["county_code"])
    group, due = _visit_plan(row, visited, rules)
    await conn.execute("UPDATE residents SET last_visit_at = $2, visit_group = $3, visit_due_at = $4, "
                       "visit_warned_at = NULL WHERE resident_id = $1", rid, visited, group, due)
    alert = await conn.fetchrow("SELECT id, severity, silence_id, status FROM alerts WHERE dedupe_key = $1 "
                                "AND status <> 'resolved' FOR UPDATE", f"{row['county_code']}|{rid}|visit_overdue")
    if alert is not None:
        await _transition(conn, ctx, alert["id"], "resolve", "system", {"resolution": "visited"})


def _elder(row) -> care.Elder:
    return care.Elder(row["birth_date"], row["living_arrangement"], tuple(row["categories"] or ()),
                      row["ability_level"], row["status"])


def _visit_plan(row, since: datetime, rules: Rules) -> tuple[str | None, datetime | None]:
    elder = _elder(row)
    due = care.visit_due(elder, since, rules)
    if due is None:
        return None, None
    return care.visit_group(elder, since.date()), due


# ------------------------------------------------------------------ the residents stream

SNAPSHOT_TYPES = frozenset({"eldercare.resident.registered.v1", "eldercare.resident.updated.v1",
                            "eldercare.resident.transferred.v1", "eldercare.resident.snapshot.v1"})
RESIDENT_TYPES = SNAPSHOT_TYPES | {"eldercare.resident.deceased.v1", "eldercare.resident.assessed.v1"}


async def apply_residents(conn: asyncpg.Connection, items: list[tuple[CloudEvent, BaseModel]]) -> None:
    """The projection: snapshots applied when newer than what is held (so they need no inbox row),
    deaths and assessments by their inbox row. Visit clocks start when a resident is first seen."""
    book = await rule_book(conn)
    now = utcnow()
    snaps: dict[str, object] = {}
    for event, data in items:
        if event.type in SNAPSHOT_TYPES:
            snap = data.resident  # type: ignore[attr-defined]
            held = snaps.get(snap.resident_id)
            if held is None or snap.version > held.version:  # type: ignore[attr-defined]
                snaps[snap.resident_id] = snap
    if snaps:
        await _upsert_snapshots(conn, book, now, list(snaps.values()))
    for event, data in items:
        if event.type == "eldercare.resident.deceased.v1":
            rid = uuid.UUID(data.resident_id)  # type: ignore[attr-defined]
            await conn.execute("UPDATE residents SET status = 'deceased', visit_due_at = NULL WHERE resident_id = $1",
                               rid)
            await conn.execute("UPDATE signals SET solitary = false WHERE resident_id = $1", rid)
        elif event.type == "eldercare.resident.assessed.v1":
            rid = uuid.UUID(data.resident_id)  # type: ignore[attr-defined]
            row = await conn.fetchrow("UPDATE residents SET ability_level = $2 WHERE resident_id = $1 RETURNING *",
                                      rid, data.level)  # type: ignore[attr-defined]
            if row is not None:
                rules, _ = book.for_county(row["county_code"])
                group, due = _visit_plan(row, row["last_visit_at"] or row["care_since"], rules)
                await conn.execute("UPDATE residents SET visit_group = $2, visit_due_at = $3 WHERE resident_id = $1",
                                   rid, group, due)


async def _upsert_snapshots(conn: asyncpg.Connection, book: RuleBook, now: datetime, snaps: list) -> None:
    ids = [uuid.UUID(s.resident_id) for s in snaps]
    held = {r["resident_id"]: r for r in await conn.fetch(
        "SELECT resident_id, version, care_since, last_visit_at FROM residents WHERE resident_id = ANY($1::uuid[])",
        ids)}
    cols: tuple[list, ...] = tuple([] for _ in range(19))
    for rid, s in zip(ids, snaps):
        old = held.get(rid)
        if old is not None and old["version"] >= s.version:
            continue
        since = old["care_since"] if old is not None else now
        last_visit = old["last_visit_at"] if old is not None else None
        rules, _ = book.for_county(s.county_code)
        row = {"birth_date": s.birth_date, "living_arrangement": s.living_arrangement, "categories": s.categories,
               "ability_level": s.ability_level, "status": s.status}
        group, due = _visit_plan(row, last_visit or since, rules)
        values = (rid, s.county_code, s.name, s.birth_date, s.gender, s.township, s.village, s.living_arrangement,
                  list(s.categories), s.ability_level, s.status, getattr(s, "emergency_contact", None), s.version,
                  since, group, due,
                  care.needs_activity_timer(care.Elder(s.birth_date, s.living_arrangement, status=s.status)),
                  s.home_lat, s.home_lon)
        for col, value in zip(cols, values):
            col.append(value)
    if not cols[0]:
        return
    await conn.execute(
        "INSERT INTO residents (resident_id, county_code, name, birth_date, gender, township, village, "
        "living_arrangement, categories, ability_level, status, emergency_contact, version, care_since, visit_group, "
        "visit_due_at, home_lat, home_lon) SELECT q.id, q.county, q.name, q.birth, q.gender, q.township, q.village, "
        "q.living, string_to_array(q.categories, ','), q.ability, q.status, q.contact, q.version, q.since, q.vgroup, "
        "q.due, q.home_lat, q.home_lon "
        "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::text[], $6::text[], $7::text[], $8::text[], "
        "$9::text[], $10::smallint[], $11::text[], $12::text[], $13::int[], $14::timestamptz[], $15::text[], "
        "$16::timestamptz[], $17::float8[], $18::float8[]) AS q(id, county, name, birth, gender, township, village, "
        "living, categories, ability, status, contact, version, since, vgroup, due, home_lat, home_lon) "
        "ON CONFLICT (resident_id) DO UPDATE SET county_code = EXCLUDED.county_code, name = EXCLUDED.name, "
        "birth_date = EXCLUDED.birth_date, gender = EXCLUDED.gender, township = EXCLUDED.township, "
        "village = EXCLUDED.village, living_arrangement = EXCLUDED.living_arrangement, "
        "categories = EXCLUDED.categories, ability_level = EXCLUDED.ability_level, status = EXCLUDED.status, "
        "emergency_contact = coalesce(EXCLUDED.emergency_contact, residents.emergency_contact), "
        "version = EXCLUDED.version, visit_group = EXCLUDED.visit_group, visit_due_at = EXCLUDED.visit_due_at, "
        "home_lat = EXCLUDED.home_lat, home_lon = EXCLUDED.home_lon "
        "WHERE residents.version < EXCLUDED.version",
        *cols[:8], [",".join(c) for c in cols[8]], *cols[9:16], cols[17], cols[18])
    await conn.execute(
        "UPDATE signals s SET solitary = q.solitary, county_code = q.county "
        "FROM unnest($1::uuid[], $2::bool[], $3::text[]) AS q(id, solitary, county) "
        "WHERE s.resident_id = q.id AND (s.solitary <> q.solitary OR s.county_code <> q.county)",
        cols[0], cols[16], cols[1])


# ------------------------------------------------------------------ the orders stream

ORDER_TYPES = frozenset(t for t in ORDER_EVENTS if t != "eldercare.order.settled.v1")


async def apply_orders(conn: asyncpg.Connection, items: list[tuple[CloudEvent, BaseModel]]) -> None:
    """Orders in stream order: the schedule starts a lateness timer, a check-in stops it (and meets
    any other order the same caregiver is checked in to), completion checks the visit's length,
    expiry and no-show raise at once."""
    ctx = await context(conn)
    for event, data in items:
        d = data.model_dump()
        county, rid = d["county_code"], d["resident_id"]
        rules, _ = ctx.book.for_county(county)
        if event.type == "eldercare.order.placed.v1":
            await conn.execute(
                "INSERT INTO orders (order_id, resident_id, county_code, service_code, provider_id, scheduled_start, "
                "scheduled_minutes, state, late_check_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'placed', $8) "
                "ON CONFLICT (order_id) DO NOTHING",
                d["order_id"], as_uuid(rid), county, d["service_code"], d["provider_id"], d["scheduled_start"],
                d["scheduled_minutes"], orders.next_late_check(d["scheduled_start"], 0, rules))
            continue
        state, at = d["state"], d["at"]
        ends = state in orders.ENDED_STATES or state == "checked_in"
        row = await conn.fetchrow(
            "UPDATE orders SET state = $2, caregiver_id = coalesce($3, caregiver_id), "
            "checked_in_at = CASE WHEN $2 = 'checked_in' THEN $4 ELSE checked_in_at END, "
            "lat = coalesce($5, lat), lon = coalesce($6, lon), "
            "late_check_at = CASE WHEN $7 THEN NULL ELSE late_check_at END WHERE order_id = $1 "
            "RETURNING caregiver_id, checked_in_at, scheduled_minutes",
            d["order_id"], state, d.get("caregiver_id"), at, d.get("lat"), d.get("lon"), ends)
        findings = orders.transition_findings(state, d)
        caregiver = d.get("caregiver_id") or (row["caregiver_id"] if row else None)
        if state == "checked_in" and caregiver:
            elsewhere = await conn.fetch("SELECT order_id, resident_id FROM orders WHERE caregiver_id = $1 "
                                         "AND state = 'checked_in' AND order_id <> $2", caregiver, d["order_id"])
            if elsewhere:
                findings.append(Finding("caregiver_double_booked", "warning", {
                    "order_id": d["order_id"], "caregiver_id": caregiver,
                    "other_orders": [r["order_id"] for r in elsewhere]}))
        if state == "completed" and row is not None and row["scheduled_minutes"]:
            short = orders.short_visit(row["checked_in_at"], at, row["scheduled_minutes"], rules)
            if short is not None:
                findings.append(Finding(short.cause, short.severity, {**short.details, "order_id": d["order_id"]}))
        for finding in findings:
            await raise_or_join(conn, ctx, finding, county=county, subject=rid, device_id=None, at=at,
                                event_id=event.id)
    await flush_steps(conn, ctx.steps)


async def orders_late_due(conn: asyncpg.Connection, limit: int = 500) -> int:
    """Caregivers not checked in at each lateness step: one alert per resident, its count rising."""
    ctx = await context(conn)
    rows = await conn.fetch(
        "SELECT order_id, resident_id, county_code, scheduled_start, late_level, caregiver_id FROM orders "
        "WHERE late_check_at <= $1 ORDER BY late_check_at LIMIT $2 FOR UPDATE SKIP LOCKED", ctx.now, limit)
    for r in rows:
        rules, _ = ctx.book.for_county(r["county_code"])
        level = max(orders.late_level(r["scheduled_start"], ctx.now, rules), r["late_level"])
        await conn.execute("UPDATE orders SET late_level = $2, late_check_at = $3 WHERE order_id = $1",
                           r["order_id"], level, orders.next_late_check(r["scheduled_start"], level, rules))
        await raise_or_join(conn, ctx, Finding("caregiver_late", "warning", {
            "order_id": r["order_id"], "minutes_late": level, "caregiver_id": r["caregiver_id"]}),
            county=r["county_code"], subject=str(r["resident_id"]) if r["resident_id"] else None, device_id=None,
            at=ctx.now, event_id=None)
    await flush_steps(conn, ctx.steps)
    return len(rows)


# ------------------------------------------------------------------ operator commands

async def load_alert(conn: asyncpg.Connection, principal: Principal, alert_id: uuid.UUID, lock: bool = False):
    row = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1" + (" FOR UPDATE" if lock else ""), alert_id)
    # Another county's alert answers as missing: its existence is not the caller's to know.
    if row is None or not principal.may_see_county(row["county_code"]):
        raise NotFound("No such alert in this token's scope.", field="alert_id")
    return row


async def command(conn: asyncpg.Connection, principal: Principal, alert_id: uuid.UUID, action: str,
                  body: dict) -> uuid.UUID:
    """ack, dispatch, resolve or escalate, on the caller's behalf."""
    await load_alert(conn, principal, alert_id, lock=True)
    ctx = await context(conn)
    await _transition(conn, ctx, alert_id, action, principal.subject, body)
    await flush_steps(conn, ctx.steps)
    return alert_id


async def _transition(conn: asyncpg.Connection, ctx: Context, alert_id: uuid.UUID, action: str, actor: str,
                      body: dict) -> None:
    row = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
    kinds = lifecycle.check(action, row["status"], row["level"])  # type: ignore[arg-type]
    now = ctx.now

    def step(kind: str, data: dict) -> None:
        ctx.steps.append(Step(alert_id, row["county_code"], row["resident_id"], row["severity"],
                              row["silence_id"] is not None, kind, now, actor, data))

    for kind in kinds:
        if kind == "acknowledged":
            await conn.execute("UPDATE alerts SET status = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3, "
                               "escalate_at = NULL WHERE id = $1", alert_id, now, actor)
            step(kind, {"operator": actor, "seconds_to_acknowledge": (now - row["raised_at"]).total_seconds()})
        elif kind == "dispatched":
            entry = {"at": now.isoformat(), "operator": actor, "targets": body["targets"], "note": body.get("note")}
            await conn.execute("UPDATE alerts SET dispatched_at = coalesce(dispatched_at, $2), "
                               "dispatch = dispatch || $3::jsonb WHERE id = $1", alert_id, now, [entry])
            step(kind, {"operator": actor, "targets": body["targets"], "note": body.get("note")})
            if "emergency_contact" in body["targets"]:
                await start_notifications(conn, ctx, row, "dispatch")
        elif kind == "resolved":
            await conn.execute("UPDATE alerts SET status = 'resolved', resolved_at = $2, resolved_by = $3, "
                               "resolution = $4, resolution_note = $5, escalate_at = NULL WHERE id = $1",
                               alert_id, now, actor, body["resolution"], body.get("note"))
            await conn.execute("UPDATE notifications SET status = 'cancelled', last_error = 'alert resolved' "
                               "WHERE alert_id = $1 AND status = 'pending'", alert_id)
            step(kind, {"operator": actor, "resolution": body["resolution"],
                        "seconds_to_resolve": (now - row["raised_at"]).total_seconds()})
        elif kind == "escalated":
            await conn.execute("UPDATE alerts SET level = 'city', escalated_at = $2, escalate_at = NULL WHERE id = $1",
                               alert_id, now)
            step(kind, {"level": "city", "reason": "operator", "operator": actor})
            if _contacts_on_escalation(ctx, row):
                await start_notifications(conn, ctx, row, "escalated")


# ------------------------------------------------------------------ timers (run by the leader)

async def escalate_due(conn: asyncpg.Connection, limit: int = 500) -> int:
    """Critical alerts not acknowledged in time move to the city. The timer is the row's
    `escalate_at`, cleared in the same statement that escalates: a restart neither loses a due
    timer (it is in the table) nor fires one twice (it is gone once fired)."""
    ctx = await context(conn)
    rows = await conn.fetch(
        "UPDATE alerts SET level = 'city', escalated_at = $1, escalate_at = NULL WHERE id IN ("
        "SELECT id FROM alerts WHERE escalate_at <= $1 AND status = 'open' AND level = 'county' "
        "ORDER BY escalate_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
        "RETURNING id, county_code, resident_id, severity, silence_id", ctx.now, limit)
    for r in rows:
        ctx.steps.append(Step(r["id"], r["county_code"], r["resident_id"], r["severity"], r["silence_id"] is not None,
                              "escalated", ctx.now, "system", {"level": "city", "reason": "not_acknowledged"}))
        if _contacts_on_escalation(ctx, r):
            await start_notifications(conn, ctx, r, "escalated")
    await flush_steps(conn, ctx.steps)
    return len(rows)


# ------------------------------------------------------------------ emergency contacts

def _contacts_on_escalation(ctx: Context, row) -> bool:
    rules, _ = ctx.book.for_county(row["county_code"])
    return (rules.contacts.on_escalation and row["severity"] in rules.contacts.severities
            and row["silence_id"] is None and row["resident_id"] is not None)


async def start_notifications(conn: asyncpg.Connection, ctx: Context, row, trigger: str) -> None:
    """Start calling the resident's emergency contacts about the alert, first in their calling order
    (the sender moves down the list when one cannot be reached). Nothing new while a call is under
    way; no contact on file is itself a step on the timeline, so the operator sees it."""
    alert_id = row["id"]
    if await conn.fetchval("SELECT 1 FROM notifications WHERE alert_id = $1 AND status = 'pending'", alert_id):
        return
    first = None
    if row["resident_id"] is not None:
        first = await conn.fetchrow("SELECT position, name, phone FROM contacts WHERE resident_id = $1 "
                                    "ORDER BY position LIMIT 1", row["resident_id"])
    if first is None:
        ctx.steps.append(Step(alert_id, row["county_code"], row["resident_id"], row["severity"],
                              row["silence_id"] is not None, "notified", ctx.now, "system", {
                                  "contact": "—", "position": 0, "trigger": trigger, "attempt": 0,
                                  "outcome": "no_contact", "error": "no emergency contact on file"}))
        return
    await conn.execute("INSERT INTO notifications (alert_id, county_code, resident_id, position, name, phone, trigger, "
                       "next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", alert_id, row["county_code"],
                       row["resident_id"], first["position"], first["name"], first["phone"], trigger, ctx.now)


async def notification_outcomes(conn: asyncpg.Connection, results: list[tuple], max_attempts: int,
                                first_retry_s: float) -> None:
    """What the sender learnt, in one transaction: each attempt a `notified` step; sent, retried
    with backoff, or failed, and then the next contact in the calling order is tried."""
    ctx = await context(conn)
    for r, error in results:
        attempts = r["attempts"] + 1
        data = {"contact": notify.label(r["name"], r["phone"]), "position": r["position"], "trigger": r["trigger"],
                "attempt": attempts}
        if error is None:
            await conn.execute("UPDATE notifications SET status = 'sent', attempts = $2, last_error = NULL, "
                               "sent_at = $3 WHERE id = $1", r["id"], attempts, ctx.now)
            data["outcome"] = "sent"
        else:
            delay = notify.retry_delay(attempts, max_attempts, first_retry_s)
            data["error"] = error
            if delay is not None:
                due = ctx.now + timedelta(seconds=delay)
                await conn.execute("UPDATE notifications SET attempts = $2, last_error = $3, next_attempt_at = $4 "
                                   "WHERE id = $1", r["id"], attempts, error, due)
                data.update(outcome="retrying", next_attempt_at=due)
            else:
                await conn.execute("UPDATE notifications SET status = 'failed', attempts = $2, last_error = $3 "
                                   "WHERE id = $1", r["id"], attempts, error)
                data["outcome"] = "failed"
                await conn.execute(
                    "INSERT INTO notifications (alert_id, county_code, resident_id, position, name, phone, trigger, "
                    "next_attempt_at) SELECT $1, $2, resident_id, position, name, phone, $3, $4 FROM contacts "
                    "WHERE resident_id = $5 AND position > $6 ORDER BY position LIMIT 1",
                    r["alert_id"], r["county_code"], r["trigger"], ctx.now, r["resident_id"], r["position"])
        ctx.steps.append(Step(r["alert_id"], r["county_code"], r["resident_id"], r["severity"],
                              r["silence_id"] is not None, "notified", ctx.now, "system", data))
    await flush_steps(conn, ctx.steps)


async def no_activity_due(conn: asyncpg.Connection, limit: int = 1000) -> int:
    """Solitary and empty-nest elders whose devices went quiet for the county's configured time.
    `alerted_for` remembers which silence was alarmed, so one quiet spell raises once."""
    ctx = await context(conn)
    raised = 0
    for county in {r["county_code"] for r in await conn.fetch("SELECT DISTINCT county_code FROM signals")}:
        rules, _ = ctx.book.for_county(county)
        cutoff = ctx.now - timedelta(hours=rules.no_activity_hours)
        rows = await conn.fetch(
            "UPDATE signals SET alerted_for = last_at WHERE resident_id IN (SELECT resident_id FROM signals "
            "WHERE county_code = $1 AND solitary AND last_at < $2 AND (alerted_for IS NULL OR alerted_for < last_at) "
            "LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING resident_id, last_at", county, cutoff, limit)
        for r in rows:
            await raise_or_join(conn, ctx, Finding("no_activity", "warning", {
                "last_signal_at": r["last_at"].isoformat(), "hours": rules.no_activity_hours}),
                county=county, subject=str(r["resident_id"]), device_id=None, at=ctx.now, event_id=None)
            raised += 1
    await flush_steps(conn, ctx.steps)
    return raised


async def visits_due(conn: asyncpg.Connection, limit: int = 1000) -> int:
    """Overdue visits raise a warning (for the groups the county's rules warn about), once per due date."""
    ctx = await context(conn)
    rows = await conn.fetch(
        "UPDATE residents SET visit_warned_at = $1 WHERE resident_id IN (SELECT resident_id FROM residents "
        "WHERE visit_due_at <= $1 AND visit_warned_at IS NULL AND status = 'active' LIMIT $2 FOR UPDATE SKIP LOCKED) "
        "RETURNING resident_id, county_code, visit_group, visit_due_at, last_visit_at", ctx.now, limit)
    for r in rows:
        rules, _ = ctx.book.for_county(r["county_code"])
        if not care.warns_when_overdue(r["visit_group"] or "others", rules):
            continue
        await raise_or_join(conn, ctx, Finding("visit_overdue", "warning", {
            "group": r["visit_group"], "due_at": r["visit_due_at"].isoformat(),
            "last_visit_at": r["last_visit_at"].isoformat() if r["last_visit_at"] else None}),
            county=r["county_code"], subject=str(r["resident_id"]), device_id=None, at=ctx.now, event_id=None)
    await flush_steps(conn, ctx.steps)
    return len(rows)
