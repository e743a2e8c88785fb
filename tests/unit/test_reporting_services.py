"""Reporting's fold of the orders and alerts topics (pure): an event moves one order's or alert's
facts forward; applying it again changes nothing; the views turn aggregate rows into figures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.reporting.domain.services import (
    OTHER_CATEGORY, AlertFacts, alerts_view, apply_alert_event, apply_order_event, category_of, orders_view,
)
from shared.events import parse_data
from shared.events.envelope import make_event

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
ORDER = "0b0e4a8e-2f0c-4a52-9a8e-6d1d7c1b2a01"
RESIDENT = "5f0e4a8e-2f0c-4a52-9a8e-6d1d7c1b2a02"


def data(event_type: str, **fields):
    """The typed data of a valid event, as the consumer hands it over (parsed by the shared contract)."""
    return parse_data(make_event(event_type, "test", fields))


def order_event(kind: str, at: datetime, **fields):
    base = {"order_id": ORDER, "resident_id": RESIDENT, "county_code": "410928"}
    if kind == "placed":
        return data("eldercare.order.placed.v1", **base, service_code="bathing", provider_id="P1",
                    scheduled_start=(T0 + timedelta(hours=2)).isoformat(), scheduled_minutes=60, price_fen=6000)
    if kind == "settled":
        return data("eldercare.order.settled.v1", **base, government_fen=4800, collective_fen=0, donation_fen=200,
                    personal_fen=1000)
    return data(f"eldercare.order.{kind}.v1", **base, at=at.isoformat(), **fields)


def lifecycle():
    """(event type, data, envelope time) of one order from placement to its rating."""
    steps = [
        ("placed", T0, {}),
        ("accepted", T0 + timedelta(seconds=90), {"state": "accepted", "previous_state": "placed"}),
        ("assigned", T0 + timedelta(minutes=5), {"state": "assigned", "previous_state": "accepted",
                                                 "caregiver_id": "C1"}),
        ("checked_in", T0 + timedelta(hours=2, minutes=4), {"state": "checked_in", "previous_state": "assigned",
                                                             "lat": 35.7, "lon": 115.0}),
        ("completed", T0 + timedelta(hours=3), {"state": "completed", "previous_state": "checked_in",
                                                "evv_status": "verified", "evv_exceptions": []}),
        ("settled", T0 + timedelta(hours=3), {}),
        ("rated", T0 + timedelta(hours=4), {"state": "rated", "previous_state": "completed", "rating": 5}),
    ]
    return [(f"eldercare.order.{kind}.v1", order_event(kind, at, **extra), at) for kind, at, extra in steps]


def fold_orders(events):
    facts = None
    for event_type, d, at in events:
        facts = apply_order_event(facts, event_type, d, at) or facts
    return facts


def test_an_order_is_folded_from_placement_to_rating():
    facts = fold_orders(lifecycle())
    assert facts.county_code == "410928" and facts.category == category_of("bathing") != OTHER_CATEGORY
    assert facts.state == "rated" and facts.completed and facts.evv_status == "verified"
    assert facts.placed_at == T0 and facts.accepted_at - facts.placed_at == timedelta(seconds=90)
    assert facts.checked_in_at == T0 + timedelta(hours=2, minutes=4)
    assert facts.rating == 5 and facts.settled
    assert (facts.government_fen, facts.collective_fen, facts.social_fen, facts.personal_fen) == (4800, 0, 200, 1000)


def test_applying_an_order_event_again_changes_nothing():
    events = lifecycle()
    facts = fold_orders(events)
    for event_type, d, at in events:
        assert apply_order_event(facts, event_type, d, at) is None, event_type


def test_the_first_acceptance_and_check_in_times_stay():
    events = lifecycle()[:4]
    facts = fold_orders(events)
    later = T0 + timedelta(hours=5)
    again = apply_order_event(facts, "eldercare.order.accepted.v1",
                              order_event("accepted", later, state="accepted", previous_state="placed"), later)
    assert again is None or again.accepted_at == facts.accepted_at


def test_an_exception_visit_keeps_its_status_when_the_county_confirms_it():
    events = lifecycle()[:4] + [
        ("eldercare.order.completed.v1", order_event("completed", T0 + timedelta(hours=3), state="completed",
                                                     previous_state="checked_in", evv_status="exception",
                                                     evv_exceptions=["outside_geofence"]), T0),
        ("eldercare.order.visit_confirmed.v1", order_event("visit_confirmed", T0 + timedelta(hours=5),
                                                           state="completed", previous_state="completed",
                                                           evv_status="confirmed"), T0),
    ]
    facts = fold_orders(events)
    assert facts.evv_status == "exception" and facts.confirmed and facts.completed


def test_late_and_no_show_orders():
    events = lifecycle()[:3] + [
        ("eldercare.order.late.v1", order_event("late", T0 + timedelta(hours=2, minutes=25), state="assigned",
                                                previous_state="assigned", late_minutes=15), T0),
        ("eldercare.order.no_show.v1", order_event("no_show", T0 + timedelta(hours=4), state="no_show",
                                                   previous_state="assigned"), T0),
    ]
    facts = fold_orders(events)
    assert facts.late and facts.state == "no_show" and not facts.completed and facts.checked_in_at is None


def test_an_unknown_service_code_is_counted_as_other():
    assert category_of("not-on-the-menu") == OTHER_CATEGORY


def alert(kind: str, at: datetime, **fields):
    return data(f"eldercare.alert.{kind}.v1", alert_id="A1", resident_id=RESIDENT, county_code="410922",
                at=at.isoformat(), **fields)


def test_an_alert_is_folded_with_its_times_and_escalation():
    events = [
        ("raised", alert("raised", T0, severity="critical", cause="sos")),
        ("updated", alert("updated", T0 + timedelta(seconds=20), count=2)),
        ("escalated", alert("escalated", T0 + timedelta(seconds=60), level="city")),
        ("acknowledged", alert("acknowledged", T0 + timedelta(seconds=75), operator="o", seconds_to_acknowledge=75)),
        ("dispatched", alert("dispatched", T0 + timedelta(seconds=90), operator="o", targets=["caregiver"])),
        ("resolved", alert("resolved", T0 + timedelta(seconds=600), operator="o", resolution="helped_at_home")),
    ]
    facts: AlertFacts | None = None
    for kind, d in events:
        new = apply_alert_event(facts, f"eldercare.alert.{kind}.v1", d)
        assert (new is None) == (kind in ("updated", "dispatched")), kind
        facts = new or facts
    assert facts.severity == "critical" and facts.escalated and facts.county_code == "410922"
    assert facts.ack_seconds == 75 and facts.resolve_seconds == 600  # from raised_at when the event has none
    for kind, d in events:
        assert apply_alert_event(facts, f"eldercare.alert.{kind}.v1", d) is None, kind


def test_an_alert_the_system_closed_before_an_operator_answered_is_marked_so_and_stays_so():
    # As the alerts service's /v1/kpis: no answer to measure (the elder came back into the zone).
    facts = apply_alert_event(None, "eldercare.alert.raised.v1", alert("raised", T0, severity="critical",
                                                                         cause="geofence_exit"))
    facts = apply_alert_event(facts, "eldercare.alert.acknowledged.v1", alert(
        "acknowledged", T0 + timedelta(seconds=40), operator="system", seconds_to_acknowledge=40))
    assert facts.closed_by_system
    later = apply_alert_event(facts, "eldercare.alert.acknowledged.v1", alert(
        "acknowledged", T0 + timedelta(seconds=90), operator="o", seconds_to_acknowledge=90))
    assert later is None  # the first acknowledgement counts, delivered again or not
    answered = apply_alert_event(None, "eldercare.alert.raised.v1", alert("raised", T0, severity="critical", cause="sos"))
    answered = apply_alert_event(answered, "eldercare.alert.acknowledged.v1", alert(
        "acknowledged", T0 + timedelta(seconds=30), operator="o", seconds_to_acknowledge=30))
    assert not answered.closed_by_system


def test_views_give_shares_of_what_ended_and_of_every_alert():
    view = orders_view({"placed": 10, "completed": 6, "not_completed": 2, "evv_verified": 5, "checked_in": 7,
                        "on_time": 6, "accept_median": 42.04, "rating_sum": 13, "rated": 3, "rating_5": 2,
                        "rating_4": 1, "government_fen": 100, "social_fen": 5, "personal_fen": 50},
                       {"生活照料": 10}, {"completed": 6, "placed": 2, "cancelled": 2})
    assert view["completion_rate"] == 0.75 and view["evv_verification_rate"] == round(5 / 6, 4)
    assert view["on_time_check_in_share"] == round(6 / 7, 4) and view["accept_seconds_median"] == 42.0
    assert view["ratings"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 2} and view["rating_mean"] == 4.33
    assert view["subsidy"]["subsidy_fen"] == 105 and view["subsidy"]["total_fen"] == 155
    assert view["subsidy"]["spend_fen"] == {"government": 100, "collective": 0, "social": 5, "personal": 50}
    empty = orders_view(None, {}, {})
    assert empty["completion_rate"] is None and empty["placed"] == 0 and empty["rating_mean"] is None
    alerts = alerts_view({"alerts": 40, "acknowledged": 39, "within_60": 39, "within_180": 39, "ack_median": 12.26})
    assert alerts["acked_within_60s"] == 0.975 and alerts["ack_seconds_median"] == 12.3
    assert alerts_view(None)["acked_within_60s"] is None


def test_a_delta_with_service_rows_is_a_valid_frame_and_is_cut_to_the_readers_scope():
    from services.reporting.domain.scope import scoped_delta
    from services.reporting.handlers import Delta
    from shared.events.reporting import AggregatesFrame

    rows = [{"county": c, "orders": orders_view(None, {}, {}), "alerts": alerts_view(None)}
            for c in ("410922", "410928", "city")]
    delta = Delta(seq=3, services=rows).as_dict()
    AggregatesFrame.model_validate({"kind": "delta", **delta})
    mine = scoped_delta(delta, "410928")
    assert [r["county"] for r in mine["services"]] == ["410928", "city"]
    assert scoped_delta({**delta, "services": rows[:1]}, "410928") is None
