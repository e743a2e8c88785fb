"""Valid orders and alerts events (by the shared contracts) for tests that publish them on a
broker of their own (never the suite's shared topics): one order from placement to its outcome,
one alert from raised to resolved."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone

from shared.events.envelope import make_event

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=6)
ORDERS_TOPIC = "eldercare.orders.orders.v1"
ALERTS_TOPIC = "eldercare.alerts.alerts.v1"


async def publish(bootstrap: str, topic: str, events) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, event in events:
            await producer.send_and_wait(topic, event.to_json(), key=key.encode())
    finally:
        await producer.stop()


def order_events(county: str, service: str, accept_s: int, *, check_in_min: int | None, outcome: str,
                 evv: str = "verified", rating: int | None = None, funding=(0, 0, 0, 0)):
    """One order's events, from placement to its outcome ('completed', 'cancelled', 'open', …)."""
    oid = str(uuid.uuid4())
    base = {"order_id": oid, "resident_id": str(uuid.uuid4()), "county_code": county}
    start = T0 + timedelta(hours=2)
    out = [make_event("eldercare.order.placed.v1", "orders", {
        **base, "service_code": service, "provider_id": "P-1", "scheduled_start": start.isoformat(),
        "scheduled_minutes": 60, "price_fen": sum(funding)}, time=T0)]
    if outcome == "placed":
        return oid, out

    def step(kind, state, previous, at, **extra):
        out.append(make_event(f"eldercare.order.{kind}.v1", "orders", {
            **base, "state": state, "previous_state": previous, "at": at.isoformat(), **extra}, time=at))

    if outcome == "cancelled":
        step("cancelled", "cancelled", "placed", T0 + timedelta(minutes=1), reason="family came")
        return oid, out
    step("accepted", "accepted", "placed", T0 + timedelta(seconds=accept_s))
    step("assigned", "assigned", "accepted", T0 + timedelta(seconds=accept_s + 60), caregiver_id="C-1")
    if outcome == "no_show":
        step("late", "assigned", "assigned", start + timedelta(minutes=25), late_minutes=15)
        step("no_show", "no_show", "assigned", start + timedelta(minutes=80))
        return oid, out
    step("checked_in", "checked_in", "assigned", start + timedelta(minutes=check_in_min))
    if outcome == "open":
        return oid, out
    done = start + timedelta(minutes=check_in_min + 60)
    step("completed", "completed", "checked_in", done, evv_status=evv, evv_exceptions=[] if evv == "verified"
         else ["outside_geofence"])
    if evv == "verified":
        g, c, s, p = funding
        out.append(make_event("eldercare.order.settled.v1", "orders", {
            **base, "government_fen": g, "collective_fen": c, "donation_fen": s, "personal_fen": p,
            "month": done.strftime("%Y-%m")}, time=done))
    if rating is not None:
        step("rated", "rated", "completed", done + timedelta(minutes=30), rating=rating)
    return oid, out


def alert_events(county: str, ack_s: float | None, resolve_s: float | None, *, escalated=False, silenced=False,
                 severity="critical"):
    aid = str(uuid.uuid4())
    base = {"alert_id": aid, "resident_id": str(uuid.uuid4()), "county_code": county}
    out = [make_event("eldercare.alert.raised.v1", "alerts", {**base, "at": T0.isoformat(), "severity": severity,
                                                              "cause": "sos", "silenced": silenced})]
    if escalated:
        out.append(make_event("eldercare.alert.escalated.v1", "alerts", {
            **base, "at": (T0 + timedelta(seconds=60)).isoformat(), "level": "city"}))
    if ack_s is not None:
        out.append(make_event("eldercare.alert.acknowledged.v1", "alerts", {
            **base, "at": (T0 + timedelta(seconds=ack_s)).isoformat(), "operator": "duty",
            "seconds_to_acknowledge": ack_s}))
    if resolve_s is not None:
        out.append(make_event("eldercare.alert.resolved.v1", "alerts", {
            **base, "at": (T0 + timedelta(seconds=resolve_s)).isoformat(), "operator": "duty",
            "resolution": "helped_at_home", "seconds_to_resolve": resolve_s}))
    return aid, out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p
    lo, hi = math.floor(rank), math.ceil(rank)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo), 1)
