"""The simulator's calendar and its actors' pure parts: rates from yearly figures with a day/night
rhythm, Poisson draws, and the synthetic providers and caregivers it registers in orders."""

from __future__ import annotations

import random
import time
from datetime import datetime

import pytest

from eldercare.actors import COUNTY_SEATS, near, synthetic_parties
from eldercare.calendar import CITY_TZ, HOURLY_ACTIVITY, SimClock, activity, draw, expected
from eldercare.simulator import malformed_event, yearly_figures
from services.orders.api.schemas import CaregiverIn, ProviderIn
from services.orders.domain.evv import distance_m
from shared.regions import load_counties


def test_the_rhythm_averages_one_over_a_day_with_quiet_nights_and_a_busy_morning():
    assert sum(HOURLY_ACTIVITY) / 24 == pytest.approx(1.0)
    assert sum(activity(h / 10) for h in range(240)) / 240 == pytest.approx(1.0, rel=0.01)
    assert activity(3) < 0.2 < 1.5 < activity(9)
    assert activity(8.5) == pytest.approx((activity(8) + activity(9)) / 2)


def test_a_simulated_year_of_family_beds_is_the_task_lists_share_and_a_real_hour_is_a_sliver():
    counties = load_counties().values()
    per_year = sum(yearly_figures(c)["family_bed"] for c in counties)
    assert 4000 < per_year < 5500  # the task list's 7.2‰ of the city's elderly: 4,800
    day = sum(expected(per_year, 3600, hour) for hour in range(24))  # 24 simulated hours
    assert day == pytest.approx(per_year / 365, rel=0.01)
    # In real time (make up's default) an hour of the busiest morning gives under one bed city-wide.
    assert expected(per_year, 3600, 9) < 1.5


def test_poisson_draws_have_the_asked_mean_for_small_and_large_means():
    rng = random.Random(7)
    for mean in (0.05, 2.5, 80):
        got = sum(draw(mean, rng) for _ in range(4000)) / 4000
        assert got == pytest.approx(mean, rel=0.1, abs=0.01)
    assert draw(0, rng) == 0


def test_the_clock_runs_compressed_from_its_start():
    start = datetime(2026, 12, 2, 6, 0, tzinfo=CITY_TZ)
    clock = SimClock(3600, start)
    time.sleep(0.05)
    assert clock.now() > start.replace(hour=6, minute=2)
    assert clock.real_seconds(3600) == 1.0
    assert clock.label().startswith("day 1 ") and "×3600" in clock.label()
    with pytest.raises(ValueError):
        SimClock(0)


MENU = [{"code": "meal", "base_price_fen": 1200, "qualification": None, "eligibility": {}},
        {"code": "cleaning", "base_price_fen": 4000, "qualification": None, "eligibility": {}},
        {"code": "health_management", "base_price_fen": 3000, "qualification": "nurse", "eligibility": {}},
        {"code": "home_doctor_visit", "base_price_fen": 5000, "qualification": "doctor", "eligibility": {}},
        {"code": "bathing", "base_price_fen": 6000, "qualification": "nursing_assistant",
         "eligibility": {"ability_level_min": 1}}]


def test_synthetic_parties_pass_the_orders_api_contract_repeat_by_seed_and_offer_what_anyone_may_order():
    parties = synthetic_parties("410928", MENU, seed=42)
    assert parties == synthetic_parties("410928", MENU, seed=42)
    assert parties != synthetic_parties("410928", MENU, seed=43)
    for party in parties:
        provider = ProviderIn(**party["provider"])
        assert provider.county_code == "410928"
        offered = {i.service_code for i in provider.items}
        assert offered <= {"meal", "cleaning", "health_management"}  # no doctor's item, no restricted one
        for cg in party["caregivers"]:
            assert CaregiverIn(**cg).provider_id == provider.id
        assert any(c["kind"] == "nurse" for cg in party["caregivers"] for c in cg["certificates"])


def test_caregivers_report_points_at_the_asked_distance_and_malformed_events_are_malformed():
    rng = random.Random(1)
    home = COUNTY_SEATS["410928"]
    for metres in (20, 150, 3000):
        assert distance_m(*home, *near(home, metres, rng)) == pytest.approx(metres, rel=0.02)
    for _ in range(20):
        event = malformed_event("410928", "00000000-0000-0000-0000-000000000001", rng)
        assert "type" not in event or not isinstance(event["data"], dict) or "teleported" in event["type"]
