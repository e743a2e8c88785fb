"""Orders-derived alerts from the order stream (eldercare.orders.orders.v1, as shared/events/orders.py
defines it): not accepted in time, no-show, caregiver late by the persisted timer, a visit far shorter
than booked, one caregiver checked in at two homes, a check-in away from the home."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson

from services.alerts import handlers
from tests.conftest import token_for
from tests.integration.alerts.support import alerts_of, projected, register, wait_alert
from tests.integration.alerts.test_detection import produce

TOPIC = "eldercare.orders.orders.v1"


def order_event(kind: str, order_id: str, resident_id: str, **data) -> bytes:
    body = {"order_id": order_id, "resident_id": resident_id, "county_code": "410928", **data}
    return orjson.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "source": "orders",
                         "type": f"eldercare.order.{kind}.v1", "subject": order_id, "countycode": "410928",
                         "data": body})


def placed(order_id: str, rid: str, start: datetime, minutes: int = 60) -> bytes:
    return order_event("placed", order_id, rid, service_code="S01", provider_id="P1",
                       scheduled_start=start.isoformat(), scheduled_minutes=minutes, price_fen=3000)


def moved(kind: str, order_id: str, rid: str, previous: str, at: datetime, **extra) -> bytes:
    return order_event(kind, order_id, rid, state=kind, previous_state=previous, at=at.isoformat(), **extra)


async def test_orders_raise_late_no_show_short_visit_and_double_booking(registry, alerts, settings, bootstrap):
    puyang = token_for(settings, "county", "410928")
    now = datetime.now(timezone.utc)
    a = await register(registry, settings)
    b = await register(registry, settings)
    c = await register(registry, settings)
    d = await register(registry, settings)
    for rid in (a, b, c, d):
        await projected(alerts, rid)
    late, expired, short, other, away = (f"o-{uuid.uuid4().hex[:8]}" for _ in range(5))
    records = [
        placed(late, a, now - timedelta(minutes=35)),
        placed(expired, b, now + timedelta(hours=2)),
        moved("expired", expired, b, "placed", now),
        placed(short, c, now - timedelta(minutes=60)),
        moved("checked_in", short, c, "assigned", now - timedelta(minutes=55), caregiver_id="cg-1"),
        placed(other, b, now - timedelta(minutes=10)),
        moved("checked_in", other, b, "assigned", now - timedelta(minutes=9), caregiver_id="cg-1"),
        moved("completed", short, c, "checked_in", now - timedelta(minutes=40), caregiver_id="cg-1"),
        placed(away, d, now - timedelta(minutes=5)),
        # The orders service's EVV found the check-in 420 m from the home (beyond 150 m + accuracy).
        moved("checked_in", away, d, "assigned", now - timedelta(minutes=4), caregiver_id="cg-2", lat=35.70,
              lon=115.03, accuracy_m=20, distance_m=420, evv_exceptions=["check_in_outside_geofence"]),
    ]
    # One key, so one partition: the orders' events are applied in the order written (keyed by
    # order id, two orders' events may interleave either way; the second check-in is the one flagged).
    await produce(bootstrap, TOPIC, records, key=b"test-orders")
    missed = await wait_alert(alerts, puyang, b, "order_not_accepted")
    assert missed["details"]["order_id"] == expired
    brief = await wait_alert(alerts, puyang, c, "visit_short")
    assert brief["details"]["booked_minutes"] == 60 and brief["details"]["minutes"] == 15
    double = await wait_alert(alerts, puyang, b, "caregiver_double_booked")
    assert double["details"]["other_orders"] == [short] and double["details"]["caregiver_id"] == "cg-1"
    # The late order's timer is persisted; firing it (as the scheduler does) raises once for 30 min.
    runtime = alerts.app.state.runtime
    async with runtime.db.transaction() as conn:
        await handlers.orders_late_due(conn)
    async with runtime.db.transaction() as conn:
        await handlers.orders_late_due(conn)
    alert = await wait_alert(alerts, puyang, a, "caregiver_late")
    assert alert["details"]["minutes_late"] == 30 and alert["count"] == 1
    async with runtime.db.connection() as conn:
        due = await conn.fetchval("SELECT late_check_at FROM orders WHERE order_id = $1", late)
    assert abs(due - (now - timedelta(minutes=35) + timedelta(minutes=60))) < timedelta(seconds=1)
    await produce(bootstrap, TOPIC, [moved("no_show", late, a, "assigned", now)])
    await wait_alert(alerts, puyang, a, "caregiver_no_show")
    assert [x["cause"] for x in await alerts_of(alerts, puyang, resident_id=c)] == ["visit_short"]
    outside = await wait_alert(alerts, puyang, d, "checkin_outside_geofence")
    assert outside["severity"] == "warning" and outside["details"]["distance_m"] == 420
    assert outside["details"]["order_id"] == away and outside["details"]["caregiver_id"] == "cg-2"
