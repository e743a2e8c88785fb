"""The task list's official targets, every county of every indicator, as the document sets them
(SPEC §2 "Targets and KPIs"), and the live requirement beside them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.reporting.domain.targets import live_requirements, official_targets, platform_live, progress
from shared.regions import load_counties

# Written out from the task list by hand (7.2‰ and 39‰ of its own 60+ populations, the city
# figure apportioned to the counties by largest remainder; the unit counts are its columns):
# family beds, beds, county special-care institutions, street centres, community day-care
# centres, township homes (all existing ones upgraded), villages, training, smart platform.
EXPECTED = {
    "410928": (1284, 6955, 1, 1, 32, 20, 980, 1500, 1),
    "410922": (875, 4741, 1, 1, 9, 17, 503, 1000, 1),
    "410923": (650, 3523, 1, 1, 8, 12, 321, 700, 1),
    "410926": (582, 3152, 1, 1, 5, 12, 574, 500, 1),
    "410927": (418, 2265, 1, 1, 0, 9, 372, 400, 1),
    "410902": (618, 3345, 1, 9, 148, 2, 20, 600, 1),
    "410971": (288, 1560, 1, 3, 48, 3, 97, 200, 1),
    "410972": (38, 206, 1, 1, 23, 0, 0, 50, 1),
    "410973": (47, 252, 1, 1, 22, 0, 0, 50, 1),
    "city": (4800, 25999, 9, 19, 295, 75, 2867, 5000, 9),
}
INDICATORS = ("family_beds", "beds", "facilities_county_special_care", "facilities_street_center",
              "facilities_daycare_center", "facilities_township_home", "facilities_happiness_home", "training",
              "smart_platform")
OFFICIAL = official_targets(load_counties().values())


@pytest.mark.parametrize("scope", list(EXPECTED))
@pytest.mark.parametrize("index,indicator", list(enumerate(INDICATORS)))
def test_official_target_is_the_task_lists(scope, index, indicator):
    assert OFFICIAL[scope].target[indicator] == EXPECTED[scope][index]


@pytest.mark.parametrize("scope", list(EXPECTED))
def test_rate_targets_are_the_same_everywhere(scope):
    target = OFFICIAL[scope].target
    assert target["beds_per_1000"] == 39
    assert target["nursing_bed_share"] == target["nursing_bed_share_special_care"] == 0.55


def test_the_issues_figures():
    # The bureau's published numbers: 1,284 family beds for Puyang County, 4,800 for the city.
    assert OFFICIAL["410928"].target["family_beds"] == 1284
    assert OFFICIAL["city"].target["family_beds"] == 4800
    assert OFFICIAL["city"].elderly == 666648
    # Village facilities cover the villages, not the homes already built (595 city-wide).
    assert OFFICIAL["city"].target["facilities_happiness_home"] == 2867
    assert OFFICIAL["city"].built["facilities_happiness_home"] == 595


@pytest.mark.parametrize("indicator", ["family_beds", "beds", "facilities_daycare_center", "facilities_happiness_home",
                                       "facilities_street_center", "training"])
def test_counties_add_up_to_the_city(indicator):
    assert sum(OFFICIAL[c].target[indicator] for c in load_counties()) == OFFICIAL["city"].target[indicator]


@pytest.mark.parametrize("code", list(load_counties()))
def test_this_years_task_and_built_figures_are_the_task_lists(code):
    county = load_counties()[code]
    o = OFFICIAL[code]
    assert o.task["facilities_county_special_care"] == county.county_special_care_task_2022
    assert o.task["facilities_street_center"] == county.street_center_task_2022
    assert o.task["facilities_daycare_center"] == county.daycare_center_task_2022
    assert o.task["facilities_township_home"] == county.township_homes_task_2022
    assert o.built["facilities_daycare_center"] == county.daycare_center_built
    assert o.built["facilities_happiness_home"] == county.happiness_homes_built


def test_live_requirement_is_the_rule_on_todays_registry_and_never_the_official_target():
    # Puyang County with 179,517 elders in today's registry: 7.2‰ gives 1,292, not the official 1,284.
    live = {code: c.elderly_60plus for code, c in load_counties().items()} | {"410928": 179517}
    req = live_requirements(live)
    assert sum(req[c]["family_beds"] for c in load_counties()) == req["city"]["family_beds"]
    assert req["city"]["family_beds"] == round(sum(live.values()) * 0.0072)
    assert req["410928"]["family_beds"] == 1292 and req["city"]["family_beds"] == 4808
    assert OFFICIAL["410928"].target["family_beds"] == 1284
    assert live_requirements({c: 0 for c in load_counties()})["city"] == {"beds": 0, "family_beds": 0}


def test_progress_is_against_the_official_target():
    assert progress(642, OFFICIAL["410928"].target["family_beds"]) == 0.5
    assert progress(5, 0) is None  # no target (Taiqian's day-care centres): no progress figure


def test_a_platform_is_live_only_if_it_posted_within_24_hours():
    now = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
    assert platform_live(now - timedelta(hours=23, minutes=59), now)
    assert not platform_live(now - timedelta(hours=24, seconds=1), now)
    assert not platform_live(None, now)
