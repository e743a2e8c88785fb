"""The county platform simulator's rules: what each county has and what it posts."""

from __future__ import annotations

import random

from eldercare.simulator import (
    ELDERS_PER_INSTITUTION, device_event, events_per_county, facility_counts, facility_event, facility_inventory,
    training_history, visit_event, with_new_occupancy,
)
from shared.events import CloudEvent, parse_data
from shared.regions import load_counties

COUNTIES = list(load_counties().values())


def parsed(event: dict):
    import orjson

    envelope = CloudEvent.from_json(orjson.dumps(event))
    return envelope, parse_data(envelope)


def test_each_county_reports_the_task_lists_built_facilities_plus_private_institutions():
    puyang = load_counties()["410928"]
    counts = facility_counts(puyang)
    assert counts["township_home"] == puyang.township_homes_existing == 20
    assert counts["daycare_center"] == puyang.daycare_center_built
    assert counts["happiness_home"] == puyang.happiness_homes_built
    assert counts["institution"] == puyang.elderly_60plus // ELDERS_PER_INSTITUTION
    inventory = facility_inventory(puyang)
    assert len(inventory) == sum(counts.values())
    assert len({f.facility_id for f in inventory}) == len(inventory)


def test_facilities_never_have_more_nursing_beds_or_residents_than_beds_and_repeat_by_seed():
    rng = random.Random(1)
    for county in COUNTIES:
        inventory = facility_inventory(county, seed=7)
        assert inventory == facility_inventory(county, seed=7)
        for facility in inventory:
            for f in (facility, with_new_occupancy(facility, rng)):
                assert 0 <= f.nursing_beds <= f.beds and 0 <= f.occupied <= f.beds
            _, data = parsed(facility_event(county.code, facility))
            assert data.beds == facility.beds and data.facility_type == facility.facility_type


def test_training_history_is_a_share_of_the_task_with_ids_fixed_by_the_seed():
    for county in COUNTIES:
        history = training_history(county, seed=42)
        assert [e["id"] for e in history] == [e["id"] for e in training_history(county, seed=42)]
        assert not {e["id"] for e in history} & {e["id"] for e in training_history(county, seed=43)}
        trainees = sum(e["data"]["trainees"] for e in history)
        assert 0.3 * county.training_task_2022 <= trainees <= 0.7 * county.training_task_2022 + 60


def test_device_and_visit_events_pass_the_shared_contracts():
    rng = random.Random(3)
    resident = "01a213da-3efc-7000-84fa-2d7c41a2de20"
    kinds = set()
    for _ in range(5000):
        envelope, _ = parsed(device_event("410928", resident, rng))
        assert envelope.subject == resident and envelope.countycode == "410928"
        kinds.add(envelope.type)
    assert {"eldercare.county.device.activity.v1", "eldercare.county.device.vitals.v1"} <= kinds
    envelope, data = parsed(visit_event("410922", resident, rng))
    assert envelope.type == "eldercare.county.visit.logged.v1" and data.kind in ("home", "phone", "video")


def test_the_city_rate_is_shared_by_elderly_population():
    rates = events_per_county(100.0, COUNTIES)
    assert abs(sum(rates.values()) - 100.0) < 1e-9
    assert rates["410928"] > rates["410922"] > rates["410972"]
