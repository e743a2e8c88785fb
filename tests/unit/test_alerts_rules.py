"""The alerts service's pure rules: detection, hysteresis, incidents, silences, timers, visits, KPIs,
webhook signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from services.alerts.domain import care, detection, lifecycle
from services.alerts.domain.kpis import AlertTimes, percentile, summarise
from services.alerts.domain.rules import Rules, VitalRange, effective, merge
from services.alerts.domain.webhooks import retry_delay, sign, verify

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)


def test_sos_and_fall_are_critical_at_once():
    rules = Rules()
    assert detection.device_findings(detection.SOS, {"device_id": "d"}, rules)[0].severity == "critical"
    fall = detection.device_findings(detection.FALL, {"device_id": "d", "confidence": 0.8}, rules)[0]
    assert (fall.cause, fall.severity, fall.details["confidence"]) == ("fall", "critical", 0.8)


def test_wearable_codes_map_to_causes_and_an_unknown_code_is_a_data_quality_warning():
    rules = Rules()
    off = detection.device_findings(detection.ALARM, {"device_id": "d", "code": "OFF_WRIST"}, rules)[0]
    assert (off.cause, off.severity) == ("device_off_wrist", "warning")
    cancel = detection.device_findings(detection.ALARM, {"device_id": "d", "code": "SOS_CANCEL"}, rules)[0]
    assert (cancel.cause, cancel.action) == ("sos", "cancel")
    unknown = detection.device_findings(detection.ALARM, {"device_id": "d", "code": "XYZ"}, rules)[0]
    assert unknown.cause == detection.UNKNOWN_CODE and unknown.details["code"] == "XYZ"


def test_activity_raises_nothing():
    assert detection.device_findings(detection.ACTIVITY, {"device_id": "d", "kind": "motion"}, Rules()) == []


def test_reading_hovering_at_an_edge_raises_once_and_clears_only_past_the_band():
    rng = VitalRange(low=45, high=130, hysteresis=5)
    state, steps = "normal", []
    for value in (131, 129, 131, 128, 126, 124, 131):
        state, step = detection.vital_step(rng, state, value)
        steps.append(step)
    # 131 raises; 129/128/126 are inside the band (hold); 131 again only repeats; 124 clears; 131 raises anew.
    assert steps == ["raise", "hold", "repeat", "hold", "hold", "clear", "raise"]


def test_low_side_and_a_jump_from_high_to_low_raise_the_low_alert():
    rng = VitalRange(low=90, hysteresis=2)
    assert detection.vital_step(rng, "normal", 89) == ("low", "raise")
    assert detection.vital_step(rng, "low", 91) == ("low", "hold")
    assert detection.vital_step(rng, "low", 92) == ("normal", "clear")
    hr = VitalRange(low=45, high=130, hysteresis=5)
    assert detection.vital_step(hr, "high", 40) == ("low", "raise")


def test_vitals_findings_name_the_cause_and_limit_and_report_changed_states():
    findings, changed = detection.vitals_findings({"device_id": "b", "heart_rate": 150, "spo2": 97}, Rules(), {})
    assert [(f.cause, f.details["limit"]) for f in findings] == [("heart_rate_high", 130)]
    assert changed == {"heart_rate": "high"}


def test_sos_and_fall_within_the_window_are_one_incident_but_not_two_falls_or_far_apart():
    assert detection.same_incident("fall", "sos", T0, T0 + timedelta(seconds=90), 300)
    assert not detection.same_incident("fall", "sos", T0, T0 + timedelta(seconds=400), 300)
    assert not detection.same_incident("fall", "fall", T0, T0, 300)
    assert not detection.same_incident("heart_rate_high", "sos", T0, T0, 300)


def test_timestamps_far_in_the_future_or_long_past_are_named():
    rules = Rules()
    assert "future" in detection.time_problem(T0 + timedelta(hours=1), T0, rules)
    assert "old" in detection.time_problem(T0 - timedelta(days=2), T0, rules)
    assert detection.time_problem(T0 - timedelta(minutes=5), T0, rules) is None


def test_only_critical_alerts_escalate_after_the_configured_time():
    rules = Rules(escalate_after_s=45)
    assert detection.escalation_due("critical", T0, rules) == T0 + timedelta(seconds=45)
    assert detection.escalation_due("warning", T0, rules) is None


def test_silence_matches_only_its_county_fields_and_time():
    s = detection.Silence("410928", T0 + timedelta(hours=1), T0, cause="device_low_battery", resident_id="r1")
    assert detection.silenced_by([s], "410928", "r1", "d", "device_low_battery", T0 + timedelta(minutes=5)) is s
    assert detection.silenced_by([s], "410928", "r2", "d", "device_low_battery", T0) is None
    assert detection.silenced_by([s], "410928", "r1", "d", "sos", T0) is None
    assert detection.silenced_by([s], "410922", "r1", "d", "device_low_battery", T0) is None
    assert detection.silenced_by([s], "410928", "r1", "d", "device_low_battery", T0 + timedelta(hours=2)) is None


def test_county_override_merges_onto_the_city_rules_and_names_both_versions():
    city = Rules().model_dump(mode="json")
    rules, version = effective(city, 3, {"escalate_after_s": 30, "vitals": {"spo2": {"low": 88}}}, "410928", 2)
    assert version == "city:3+410928:2"
    assert rules.escalate_after_s == 30 and rules.vitals["spo2"].low == 88 and rules.vitals["spo2"].hysteresis == 2
    assert rules.vitals["heart_rate"].high == 130
    assert effective(city, 3, None, "410928", None)[1] == "city:3"
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}}


def test_rules_refuse_unknown_vitals_and_a_band_wider_than_the_range():
    with pytest.raises(ValidationError, match="unknown vital sign"):
        Rules.model_validate({"vitals": {"glucose": {"high": 10}}})
    with pytest.raises(ValidationError, match="hysteresis"):
        VitalRange(low=90, high=100, hysteresis=6)


def test_visit_groups_follow_regional_practice():
    today = date(2026, 12, 2)
    assert care.visit_group(care.Elder(date(1940, 1, 1), "alone"), today) == "high_risk"
    assert care.visit_group(care.Elder(date(1940, 1, 1), "with_family"), today) == "others"
    assert care.visit_group(care.Elder(date(1950, 1, 1), "with_family", ("dementia",)), today) == "key_group"
    assert care.visit_group(care.Elder(date(1950, 1, 1), "with_family", (), 3), today) == "key_group"
    rules = Rules()
    assert care.visit_due(care.Elder(date(1940, 1, 1), "empty_nest"), T0, rules) == T0 + timedelta(days=7)
    assert care.visit_due(care.Elder(date(1950, 1, 1), "alone", ("extreme_poverty_dispersed",)), T0,
                          rules) == T0 + timedelta(days=30)
    assert care.visit_due(care.Elder(date(1950, 1, 1), "with_family"), T0, rules) == T0 + timedelta(days=90)
    assert care.visit_due(care.Elder(date(1940, 1, 1), "alone", status="deceased"), T0, rules) is None
    assert not care.warns_when_overdue("others", rules) and care.warns_when_overdue("key_group", rules)


def test_only_solitary_and_empty_nest_elders_get_a_no_activity_timer():
    assert care.needs_activity_timer(care.Elder(date(1950, 1, 1), "alone"))
    assert care.needs_activity_timer(care.Elder(date(1950, 1, 1), "empty_nest"))
    assert not care.needs_activity_timer(care.Elder(date(1950, 1, 1), "with_family"))
    assert not care.needs_activity_timer(care.Elder(date(1950, 1, 1), "alone", status="deceased"))


def test_lifecycle_refuses_acting_on_a_resolved_alert_and_double_escalation():
    assert lifecycle.check("ack", "open", "county") == ["acknowledged"]
    assert lifecycle.check("resolve", "open", "county") == ["acknowledged", "resolved"]
    assert lifecycle.check("dispatch", "acknowledged", "county") == ["dispatched"]
    with pytest.raises(lifecycle.AlertAlreadyResolved):
        lifecycle.check("ack", "resolved", "county")
    with pytest.raises(lifecycle.AlertAlreadyAcknowledged):
        lifecycle.check("ack", "acknowledged", "county")
    with pytest.raises(lifecycle.AlertAlreadyEscalated):
        lifecycle.check("escalate", "open", "city")


def test_kpis_count_unacknowledged_alerts_against_the_target():
    rows = [AlertTimes("critical", s, s + 100, False) for s in (10, 20, 50, 70, 200)]
    rows.append(AlertTimes("critical", None, None, True))
    k = summarise(rows)
    assert k["alerts"] == 6 and k["acknowledged"] == 5
    assert k["acked_within_60s"] == round(3 / 6, 4) and k["acked_within_180s"] == round(4 / 6, 4)
    assert k["ack_seconds_median"] == 50 and k["escalations"] == 1
    assert percentile([1, 2, 3, 4], 0.9) == pytest.approx(3.7)
    assert summarise([])["acked_within_60s"] is None


def test_webhook_signature_follows_standard_webhooks():
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    body = b'{"a":1}'
    expected = base64.b64encode(hmac.new(b"0123456789abcdef0123456789abcdef", b"msg_1.1700000000." + body,
                                         hashlib.sha256).digest()).decode()
    assert sign(secret, "msg_1", 1700000000, body) == "v1," + expected
    assert verify(secret, "msg_1", 1700000000, body, "v1,bogus " + "v1," + expected)
    assert not verify(secret, "msg_1", 1700000001, body, "v1," + expected)


def test_retries_back_off_exponentially_then_dead_letter():
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(8) is None


def test_lateness_steps_follow_the_rules_and_end_after_the_last():
    from services.alerts.domain import orders

    rules = Rules()
    assert orders.next_late_check(T0, 0, rules) == T0 + timedelta(minutes=15)
    assert orders.next_late_check(T0, 15, rules) == T0 + timedelta(minutes=30)
    assert orders.next_late_check(T0, 60, rules) is None
    assert orders.late_level(T0, T0 + timedelta(minutes=31), rules) == 30
    assert orders.late_level(T0, T0 + timedelta(minutes=14), rules) == 0
    with pytest.raises(ValidationError, match="late_minutes"):
        Rules(late_minutes=[30, 15])


def test_a_visit_far_shorter_than_booked_is_flagged_and_expiry_and_no_show_raise():
    from services.alerts.domain import orders

    rules = Rules()
    assert orders.short_visit(T0, T0 + timedelta(minutes=20), 60, rules).details["minutes"] == 20
    assert orders.short_visit(T0, T0 + timedelta(minutes=45), 60, rules) is None
    assert orders.short_visit(None, T0, 60, rules) is None
    assert orders.transition_findings("expired", {"order_id": "o"})[0].cause == "order_not_accepted"
    assert orders.transition_findings("no_show", {"order_id": "o"})[0].cause == "caregiver_no_show"
    assert orders.transition_findings("accepted", {"order_id": "o"}) == []
