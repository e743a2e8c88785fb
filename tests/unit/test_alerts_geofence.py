"""Geofence hysteresis and emergency-contact retry rules (pure domain logic of the alerts service)."""

from __future__ import annotations

import math

from services.alerts.domain import geofence, notify
from services.alerts.domain.rules import GeofenceRule, Rules

HOME = (35.7000, 115.0000)
RULES = GeofenceRule()  # radius 300 m, band 50 m, 2 fixes to leave, 2 to come back
ZONE = geofence.Zone(HOME[0], HOME[1], 300, "home")


def north(metres: float) -> tuple[float, float]:
    """A point `metres` due north of home."""
    return HOME[0] + metres / (geofence.EARTH_RADIUS_M * math.pi / 180), HOME[1]


def walk(distances: list[float], accuracy: float | None = None, state: str = "inside", rules=RULES):
    actions, streak = [], 0
    for d in distances:
        lat, lon = north(d)
        result = geofence.step(ZONE, state, streak, lat, lon, accuracy, rules)  # type: ignore[arg-type]
        state, streak = result.state, result.streak
        actions.append(result.action)
    return actions, state


def test_distance_is_the_great_circle_in_metres():
    lat, lon = north(1000)
    assert abs(geofence.distance_m(*HOME, lat, lon) - 1000) < 0.5
    # one degree of longitude at 35.7° N is about 90.4 km
    assert abs(geofence.distance_m(35.7, 115.0, 35.7, 116.0) - 90_400) < 200


def test_gps_jitter_at_the_edge_never_raises():
    jitter = [290, 330, 345, 310, 349, 280, 340, 301, 348, 320] * 5
    actions, state = walk(jitter)
    assert "raise" not in actions and state == "inside"


def test_leaving_takes_two_confident_fixes_in_a_row_and_raises_once():
    actions, state = walk([100, 420, 200, 420, 430, 800, 1200, 360])
    # one fix outside then one inside breaks the streak; two in a row raise; then it holds
    assert actions == ["hold", "hold", "hold", "hold", "raise", "hold", "hold", "hold"]
    assert state == "outside"


def test_coming_back_clears_only_well_inside_and_jitter_outside_does_not_clear():
    actions, state = walk([600, 280, 320, 260, 400, 240, 230], state="outside")
    # 280 and 260 are inside the radius but within the 50 m band: no evidence of being back
    assert actions == ["hold", "hold", "hold", "hold", "hold", "hold", "clear"]
    assert state == "inside"


def test_a_vague_fix_is_ignored_and_accuracy_counts_against_leaving():
    actions, _ = walk([2000, 2000], accuracy=600)
    assert actions == ["ignored", "ignored"]
    # 400 m away but ±80 m: it could be 320 m, inside radius + band: not evidence of leaving
    actions, state = walk([400, 400, 400], accuracy=80)
    assert actions == ["hold", "hold", "hold"] and state == "inside"
    actions, _ = walk([400, 400], accuracy=20)
    assert actions == ["hold", "raise"]


def test_a_small_zone_keeps_a_band_of_half_its_radius():
    small = geofence.Zone(HOME[0], HOME[1], 60, "configured")
    result = geofence.step(small, "outside", 0, *north(25), None, GeofenceRule(hysteresis_m=100, return_fixes=1))
    assert result.action == "clear"


def test_the_zone_is_the_configured_one_else_home_for_the_watched_groups():
    configured = geofence.Zone(35.8, 115.1, 500, "configured", "GPS-1")
    assert geofence.zone_for(configured, *HOME, (), RULES) == configured
    home = geofence.zone_for(None, *HOME, ("dementia", "low_income"), RULES)
    assert home == geofence.Zone(HOME[0], HOME[1], 300, "home")
    assert geofence.zone_for(None, *HOME, ("low_income",), RULES) is None
    assert geofence.zone_for(None, None, None, ("dementia",), RULES) is None
    assert geofence.zone_for(configured, *HOME, ("dementia",), GeofenceRule(enabled=False)) is None


def test_geofence_rules_are_data_validated_like_the_rest():
    rules = Rules.model_validate({"geofence": {"radius_m": 500, "home_zone_categories": ["dementia",
                                                                                         "severe_disability"]}})
    assert rules.geofence.radius_m == 500 and rules.geofence.exit_fixes == 2
    try:
        Rules.model_validate({"geofence": {"home_zone_categories": ["wanderers"]}})
    except ValueError as exc:
        assert "home_zone_categories" in str(exc)
    else:
        raise AssertionError("an unknown category was accepted")


def test_contact_retries_back_off_then_give_up_and_phones_are_masked():
    delays = [notify.retry_delay(n, 4, 2.0) for n in range(1, 6)]
    assert delays == [2.0, 4.0, 8.0, None, None]
    assert notify.retry_delay(12, 20, 2.0) == notify.MAX_RETRY_S
    assert notify.label("王建国", "13800001234") == "王建国 138****1234"
    text = notify.message("李桂兰", "东街社区", "geofence_exit")
    assert "李桂兰" in text and "离开安全区域" in text


def test_an_evv_check_in_away_from_home_is_a_warning_and_a_verified_one_is_not():
    from services.alerts.domain.orders import transition_findings

    [finding] = transition_findings("checked_in", {"order_id": "o1", "caregiver_id": "cg", "distance_m": 420,
                                                   "accuracy_m": 20, "evv_exceptions": ["check_in_outside_geofence"]})
    assert (finding.cause, finding.severity, finding.details["distance_m"]) == ("checkin_outside_geofence",
                                                                               "warning", 420)
    [out] = transition_findings("completed", {"order_id": "o1", "evv_exceptions": ["check_out_outside_geofence"]})
    assert out.cause == "checkout_outside_geofence"
    assert transition_findings("checked_in", {"order_id": "o2", "evv_exceptions": []}) == []
    assert transition_findings("checked_in", {"order_id": "o3", "evv_exceptions": None}) == []
