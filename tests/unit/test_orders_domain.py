"""The orders service's pure rules: state machine, funding split, policies, eligibility, EVV, timers."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest

from services.orders.domain.catalog import certificates_allow, load_menu
from services.orders.domain.errors import TransitionRefused
from services.orders.domain.evv import distance_m, exceptions_at_check_in, exceptions_at_check_out, geofence, overlaps
from services.orders.domain.funding import SOURCES, Benefit, Line, split_order
from services.orders.domain.lifecycle import TRANSITIONS, next_state
from services.orders.domain.policies import (
    DEFAULT_CITY_POLICY, PolicyVersion, benefits_for, parse_benefits, parse_budgets, resolve,
)
from services.orders.domain.residents import ResidentFacts, apply_resident_event
from services.orders.domain.rules import RuleInvalid, unmet, validate_rule
from services.orders.domain.schedule import Timers, due_step, first_due
from shared.events.residents import ResidentAssessed, ResidentDeceased, ResidentSnapshot, ResidentUpdated

DAY = date(2026, 12, 2)


def resident(**kw) -> ResidentFacts:
    base = dict(resident_id="r1", county_code="410928", name="周秀珍", birth_date=date(1940, 5, 1), township="城关镇",
                village="东街社区", living_arrangement="with_family", categories=(), ability_level=0, status="active",
                family_bed=False, home_lat=None, home_lon=None, date_of_death=None, version=1)
    base.update(kw)
    return ResidentFacts(**base)


# ------------------------------------------------------------------ state machine

def test_every_listed_transition_leads_where_the_spec_says():
    path = ["accept", "assign", "check_in", "check_out", "rate"]
    state = "placed"
    for action in path:
        state = next_state(state, action)
    assert state == "rated"


def test_a_step_from_the_wrong_state_is_refused_naming_the_current_state():
    with pytest.raises(TransitionRefused) as err:
        next_state("completed", "cancel")
    assert err.value.extra["current_state"] == "completed"
    assert "completed" in err.value.detail
    for action, (sources, _) in TRANSITIONS.items():
        for state in ("rated", "cancelled", "expired"):
            if state not in sources:
                with pytest.raises(TransitionRefused):
                    next_state(state, action)


# ------------------------------------------------------------------ funding split

GOV = Benefit("gov80", "低保", "government", 80, 20000, {})
COL = Benefit("col10", "集体", "collective", 10, 3000, {})
SOC = Benefit("soc10", "社会", "social", 10, 3000, {})


def test_split_pays_each_share_and_personal_takes_the_rest():
    split = split_order([Line("cleaning", 2, 4000)], [GOV, COL], {}, {"government": 10**9, "collective": 10**9})
    assert split.totals == {"government": 6400, "collective": 800, "social": 0, "personal": 800}
    assert split.used == {"gov80": 6400, "col10": 800}


def test_monthly_cap_limits_a_benefit_and_the_rest_is_personal():
    split = split_order([Line("cleaning", 1, 4000)], [GOV], {"gov80": 1000}, {"government": 10**9})
    assert split.totals["government"] == 1000 and split.totals["personal"] == 3000
    assert any("cap" in n for n in split.notes)


def test_an_exhausted_budget_pays_nothing_more_and_personal_takes_it():
    split = split_order([Line("cleaning", 1, 4000), Line("meal", 1, 1200)], [GOV, SOC], {},
                        {"government": 500, "social": 10**6})
    assert split.totals["government"] == 500
    assert split.lines[1].fen["government"] == 0
    assert split.totals["social"] == 400 + 120
    assert sum(split.totals.values()) == 5200
    assert any("government budget exhausted" in n for n in split.notes)


def test_benefit_limited_to_services_leaves_other_lines_alone():
    care = Benefit("care", "照护", "government", 100, 10**6, {}, ("bathing",))
    split = split_order([Line("bathing", 1, 6000), Line("meal", 1, 1200)], [care], {}, {"government": 10**9})
    assert split.lines[0].fen["government"] == 6000 and split.lines[1].fen["personal"] == 1200


def test_shares_never_exceed_the_line_and_odd_fen_go_to_personal():
    split = split_order([Line("meal", 1, 1001)], [GOV, Benefit("all", "x", "social", 100, 10**6, {})], {},
                        {"government": 10**9, "social": 10**9})
    assert split.lines[0].fen == {"government": 800, "collective": 0, "social": 201, "personal": 0}


def test_random_orders_reconcile_exactly_to_the_fen_with_caps_and_budgets():
    rng = random.Random(7)
    benefits = [GOV, COL, SOC, Benefit("gov100", "x", "government", 100, 5000, {}, ("visit",))]
    caps = {b.code: b.monthly_cap_fen for b in benefits}
    budget = {"government": 2_000_000, "collective": 100_000, "social": 50_000}
    total_price = 0
    paid = dict.fromkeys(SOURCES, 0)
    for _ in range(2000):
        lines = [Line(rng.choice(["visit", "meal", "cleaning"]), rng.randint(1, 3), rng.randint(1, 9000))
                 for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.05:
            caps = {b.code: b.monthly_cap_fen for b in benefits}  # a new month for this "resident"
        split = split_order(lines, benefits, caps, budget)
        for ls in split.lines:
            assert sum(ls.fen.values()) == ls.line.price_fen and min(ls.fen.values()) >= 0
        for code, fen in split.used.items():
            caps[code] -= fen
            assert caps[code] >= 0
        for source, fen in split.spent.items():
            budget[source] -= fen
            assert budget[source] >= 0
        total_price += split.price_fen
        for s in SOURCES:
            paid[s] += split.totals[s]
    assert sum(paid.values()) == total_price
    assert budget["social"] < 3000  # the small budget ran out and was never overdrawn


# ------------------------------------------------------------------ policies and rules

def test_county_override_wins_over_the_city_and_inherits_what_it_does_not_set():
    city_benefits = parse_benefits(DEFAULT_CITY_POLICY["benefits"])
    versions = [
        PolicyVersion("city", 1, date(2026, 1, 1), None, city_benefits, parse_budgets(DEFAULT_CITY_POLICY["budgets"])),
        PolicyVersion("city", 2, date(2027, 1, 1), None, city_benefits[:1], {"government": 1}),
        PolicyVersion("410928", 1, date(2026, 6, 1), date(2026, 12, 31), None, {"government": 99, "social": 5}),
    ]
    now = resolve(versions, "410928", DAY)
    assert now.budgets == {"government": 99, "collective": 0, "social": 5}
    assert now.benefits == city_benefits and now.ref == "410928@v1+city@v1"
    later = resolve(versions, "410928", date(2027, 2, 1))
    assert later.ref == "city@v2" and len(later.benefits) == 1
    assert resolve(versions, "410922", DAY).ref == "city@v1"


def test_benefits_stop_from_the_date_of_death():
    policy = resolve([PolicyVersion("city", 1, date(2026, 1, 1), None,
                                    parse_benefits(DEFAULT_CITY_POLICY["benefits"]), {})], "410928", DAY)
    poor = resident(categories=("minimum_allowance",), birth_date=date(1930, 1, 1))
    assert {b.code for b in benefits_for(policy, poor, DAY)} >= {"minimum_allowance", "advanced_age"}
    dead = poor._replace(status="deceased", date_of_death=DAY)
    assert benefits_for(policy, dead, DAY) == []


def test_rules_name_the_unmet_condition_and_bad_rules_are_refused():
    assert unmet({"ability_level_min": 1}, resident(ability_level=None), DAY).startswith("needs ability level 1")
    assert unmet({"any": [{"age_min": 80}, {"family_bed": True}]}, resident(birth_date=date(1960, 1, 1)), DAY)
    assert unmet({"any": [{"age_min": 80}, {"family_bed": True}]}, resident(family_bed=True), DAY) is None
    with pytest.raises(RuleInvalid, match="colour"):
        validate_rule({"colour": "red"})
    with pytest.raises(RuleInvalid, match=r"benefits\[0\].share_pct"):
        parse_benefits([{"code": "x", "source": "government", "share_pct": 101, "monthly_cap_fen": 1}])


def test_menu_has_all_22_services_with_integer_prices_and_valid_rules():
    menu = load_menu()
    assert len(menu) == 22 and len({m.code for m in menu}) == 22
    for item in menu:
        assert isinstance(item.base_price_fen, int) and item.base_price_fen > 0
        validate_rule(item.eligibility)
    bathing = next(m for m in menu if m.code == "bathing")
    assert unmet(bathing.eligibility, resident(ability_level=0), DAY)
    assert unmet(bathing.eligibility, resident(ability_level=1), DAY) is None


def test_only_a_valid_certificate_strong_enough_allows_a_service():
    assert certificates_allow([("nurse", date(2027, 1, 1))], "nursing_assistant", DAY)
    assert not certificates_allow([("nurse", date(2026, 12, 1))], "nurse", DAY)  # expired yesterday
    assert not certificates_allow([("nursing_assistant", None)], "doctor", DAY)
    assert certificates_allow([], None, DAY)


# ------------------------------------------------------------------ projection

def snapshot(version: int, **kw) -> ResidentSnapshot:
    base = dict(resident_id="r1", county_code="410928", name="周秀珍", birth_date=date(1940, 5, 1), gender="female",
                township="城关镇", village="东街社区", living_arrangement="alone", version=version)
    base.update(kw)
    return ResidentSnapshot(**base)


def test_projection_applies_newer_snapshots_and_ignores_older_ones():
    first = apply_resident_event(None, "eldercare.resident.registered.v1",
                                 ResidentUpdated(resident=snapshot(2, categories=["dementia"])))
    assert first.version == 2 and first.categories == ("dementia",)
    assert apply_resident_event(first, "eldercare.resident.updated.v1", ResidentUpdated(resident=snapshot(1))) is None
    assert apply_resident_event(first, "eldercare.resident.updated.v1", ResidentUpdated(resident=snapshot(2))) is None
    moved = apply_resident_event(first, "eldercare.resident.transferred.v1",
                                 ResidentUpdated(resident=snapshot(3, county_code="410922")))
    assert moved.county_code == "410922"
    assessed = apply_resident_event(moved, "eldercare.resident.assessed.v1", ResidentAssessed(
        resident_id="r1", county_code="410922", assessment_id="a", level=3, reason="routine",
        assessed_on=DAY, assessor="x"))
    assert assessed.ability_level == 3
    dead = apply_resident_event(assessed, "eldercare.resident.deceased.v1",
                                ResidentDeceased(resident_id="r1", county_code="410922", date_of_death=DAY))
    assert dead.status == "deceased" and dead.date_of_death == DAY
    assert apply_resident_event(None, "eldercare.resident.deceased.v1",
                                ResidentDeceased(resident_id="r9", county_code="410922", date_of_death=DAY)) is None


# ------------------------------------------------------------------ EVV

def test_geofence_is_150_m_widened_by_the_reported_accuracy():
    home = (35.7620, 115.0300)
    north_200m = 35.7620 + 200 / 111_195
    assert abs(distance_m(*home, north_200m, 115.03) - 200) < 1
    assert geofence(home, north_200m, 115.03, accuracy_m=20).inside is False
    assert geofence(home, north_200m, 115.03, accuracy_m=60).inside is True
    assert geofence(None, north_200m, 115.03, 5).inside is None
    assert exceptions_at_check_in(geofence(None, 0, 0, 5), overlapping=True) == [
        "home_location_unknown", "caregiver_in_two_places"]


def test_a_visit_under_half_the_booked_time_is_short():
    fence = geofence((35.0, 115.0), 35.0, 115.0, 5)
    assert exceptions_at_check_out(fence, 29, 60, 0.5) == ["short_visit"]
    assert exceptions_at_check_out(fence, 30, 60, 0.5) == []


def test_visits_of_one_caregiver_overlap_when_their_times_cross():
    t = datetime(2026, 12, 2, 9, tzinfo=timezone.utc)
    h = timedelta(hours=1)
    assert overlaps(t, None, t - h, None)
    assert overlaps(t, t + h, t - h, t + timedelta(minutes=1))
    assert not overlaps(t, t + h, t - h, t)


# ------------------------------------------------------------------ timers

T = Timers(accept_within=timedelta(hours=2), grace=timedelta(minutes=10), no_show_after=timedelta(minutes=90))
START = datetime(2026, 12, 2, 9, tzinfo=timezone.utc)
PLACED = START - timedelta(days=1)


def test_unaccepted_order_expires_at_its_deadline():
    assert first_due("placed", PLACED, START, T) == PLACED + timedelta(hours=2)
    assert due_step("placed", PLACED + timedelta(hours=1), PLACED, START, 0, T).action is None
    assert due_step("placed", PLACED + timedelta(hours=2), PLACED, START, 0, T).action == "expire"
    soon = START - timedelta(minutes=30)
    assert first_due("placed", soon, START, T) == START  # never after the visit should begin


def test_late_steps_at_15_30_60_after_the_grace_then_no_show():
    at = lambda minutes: START + timedelta(minutes=minutes)  # noqa: E731
    assert first_due("assigned", PLACED, START, T) == at(25)
    step = due_step("assigned", at(25), PLACED, START, 0, T)
    assert (step.action, step.late_minutes, step.next_due) == ("late", 15, at(40))
    step = due_step("assigned", at(41), PLACED, START, 15, T)
    assert (step.action, step.late_minutes, step.next_due) == ("late", 30, at(70))
    # a restart after a long pause reports only the latest step reached
    step = due_step("accepted", at(75), PLACED, START, 0, T)
    assert (step.action, step.late_minutes, step.next_due) == ("late", 60, at(90))
    assert due_step("assigned", at(90), PLACED, START, 60, T).action == "no_show"
    assert due_step("checked_in", at(90), PLACED, START, 60, T).action is None
