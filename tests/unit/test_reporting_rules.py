"""Reporting's pure rules: folding resident events into counters, targets, the stream buffer."""

import json
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from services.reporting.domain.folding import CITY, apply_event, delta
from services.reporting.domain.targets import family_bed_targets
from services.reporting.stream import Broadcaster
from shared.regions import load_counties


def snap(**over):
    base = dict(resident_id="r1", county_code="410928", birth_date="1945-03-02", gender="female",
                living_arrangement="alone", categories=["dementia"], ability_level=2, status="active",
                family_bed=False, version=1, township="城关镇", village="东街社区")
    base.update(over)
    return SimpleNamespace(resident=SimpleNamespace(**{"family_doctor_contract": False, **base}))


def test_registration_counts_in_county_and_city():
    new = apply_event(None, "eldercare.resident.registered.v1", snap())
    changes = delta(None, new)
    assert changes[("410928", "status", "active")] == 1
    assert changes[(CITY, "category", "dementia")] == 1
    assert changes[("410928", "birth_month", "1945-03")] == 1


def test_transfer_moves_the_resident_between_counties():
    old = apply_event(None, "eldercare.resident.registered.v1", snap())
    new = apply_event(old, "eldercare.resident.transferred.v1", snap(county_code="410922", version=2))
    changes = delta(old, new)
    assert changes[("410928", "status", "active")] == -1
    assert changes[("410922", "status", "active")] == 1
    assert (CITY, "status", "active") not in changes  # the city total does not change


def test_an_older_snapshot_arriving_late_changes_nothing():
    current = apply_event(None, "eldercare.resident.registered.v1", snap(version=3))
    assert apply_event(current, "eldercare.resident.updated.v1", snap(version=2, living_arrangement="with_family")) is None


def test_a_republished_snapshot_applies_by_version_like_any_other():
    current = apply_event(None, "eldercare.resident.registered.v1", snap(version=2))
    assert apply_event(current, "eldercare.resident.snapshot.v1", snap(version=2)) is None
    assert apply_event(current, "eldercare.resident.snapshot.v1", snap(version=1, status="deceased")) is None
    newer = apply_event(current, "eldercare.resident.snapshot.v1", snap(version=3, ability_level=4))
    assert newer.ability_level == 4 and newer.version == 3
    # An empty projection (a rebuild after the log was lost) takes the snapshot as the resident.
    assert apply_event(None, "eldercare.resident.snapshot.v1", snap(version=5)).version == 5


def test_death_removes_from_profile_counters_but_keeps_the_status_count():
    alive = apply_event(None, "eldercare.resident.registered.v1", snap())
    dead = apply_event(alive, "eldercare.resident.deceased.v1", SimpleNamespace())
    changes = delta(alive, dead)
    assert changes[("410928", "status", "deceased")] == 1 and changes[("410928", "category", "dementia")] == -1


def test_family_bed_targets_add_up_to_the_city_target_exactly():
    elderly = {c: county.elderly_60plus for c, county in load_counties().items()}
    city, counties = family_bed_targets(elderly)
    assert city == round(666648 * 0.0072) == 4800
    assert sum(counties.values()) == city
    assert abs(counties["410928"] - 178337 * Fraction(72, 10000)) < 1


def test_broadcaster_replays_what_a_reconnecting_client_missed_or_asks_for_a_snapshot():
    b = Broadcaster(buffer=3)
    b.reset(10)
    b.publish([{"seq": s} for s in (11, 12, 13, 14)])
    assert [d["seq"] for d in b.missed_since(12)] == [13, 14]
    assert b.missed_since(14) == []
    assert b.missed_since(10) is None  # 11 was dropped from the buffer
    assert b.missed_since(99) is None  # from another epoch


def test_a_slow_subscriber_is_marked_for_a_snapshot_not_grown_without_bound():
    b = Broadcaster()
    sub = b.subscribe()
    for s in range(sub.queue.maxsize + 5):
        b.publish([{"seq": s + 1}])
    assert sub.overflowed and sub.queue.full()


def test_city_changes_are_the_sum_of_the_county_changes_and_zeros_are_dropped():
    from services.reporting.domain.folding import accumulate, with_city

    a = apply_event(None, "eldercare.resident.registered.v1", snap(resident_id="a"))
    b = apply_event(None, "eldercare.resident.registered.v1", snap(resident_id="b", county_code="410922"))
    moved = apply_event(b, "eldercare.resident.transferred.v1", snap(resident_id="b", county_code="410928",
                                                                      version=2))
    changes: dict = {}
    accumulate(changes, None, a)
    accumulate(changes, None, b)
    accumulate(changes, b, moved)
    folded = with_city(changes)
    assert folded[("410928", "status", "active")] == 2 and folded[(CITY, "status", "active")] == 2
    assert ("410922", "status", "active") not in folded  # registered then moved away: net zero


EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "events" / "examples"


def test_the_one_pass_parser_reads_every_folded_example_as_the_shared_contract_does():
    from services.reporting.handlers import FOLDED_TYPES
    from services.reporting.parsing import envelope_parser
    from shared.events import CloudEvent, parse_data

    parse = envelope_parser(FOLDED_TYPES)
    for event_type in FOLDED_TYPES:
        raw = (EXAMPLES / f"{event_type}.json").read_bytes()
        event, data = parse(raw)
        generic = CloudEvent.from_json(raw)
        assert (event.id, event.type, event.time, event.countycode) == (generic.id, generic.type, generic.time,
                                                                        generic.countycode)
        assert data == parse_data(generic)


def test_the_one_pass_parser_refuses_what_the_generic_path_must_judge():
    from services.reporting.handlers import FOLDED_TYPES
    from services.reporting.parsing import envelope_parser

    parse = envelope_parser(FOLDED_TYPES)
    registered = json.loads((EXAMPLES / "eldercare.resident.registered.v1.json").read_text())
    wrong_gender = {**registered, "data": {"resident": {**registered["data"]["resident"], "gender": "x"}}}
    order = json.loads((EXAMPLES / "eldercare.order.placed.v1.json").read_text())
    negative_price = {**order, "data": {**order["data"], "price_fen": -1}}
    frame = json.loads((EXAMPLES / "eldercare.reporting.aggregates.frame.v1.json").read_text())
    parse(json.dumps(order).encode())  # orders are folded too (the orders topic)
    for raw in (json.dumps(wrong_gender).encode(), json.dumps(negative_price).encode(), json.dumps(frame).encode(),
                b"{not json"):
        with pytest.raises(ValidationError):
            parse(raw)


def test_residents_on_their_way_are_out_of_both_sides_and_a_real_difference_stays():
    from services.reporting.domain.consistency import compare_at_cut

    registry = {"410928": {"family_bed": {"yes": 11}, "gender": {"female": 5}},
                "city": {"family_bed": {"yes": 11}, "gender": {"female": 5}}}
    ours = {"410928": {"family_bed": {"yes": 10}, "gender": {"female": 5}},
            "city": {"family_bed": {"yes": 10}, "gender": {"female": 5}}}
    # The registry set up a bed for a resident reporting still has without it: in flight.
    theirs = [("410928", [("family_bed", "yes"), ("gender", "female")])]
    mine = [("410928", [("gender", "female")])]
    assert compare_at_cut(registry, ours, theirs, mine) == []
    # A resident registered and not folded yet: only the registry has it.
    registry2 = {k: {"family_bed": {"yes": 11}, "gender": {"female": 6}} for k in ("410928", "city")}
    assert compare_at_cut(registry2, ours, [("410928", [("family_bed", "yes"), ("gender", "female")])], []) == []
    # A counter off by 7 is a difference, in the county and the city.
    tampered = {k: {"family_bed": {"yes": 10}, "gender": {"female": 12}} for k in ("410928", "city")}
    diffs = compare_at_cut(registry, tampered, theirs, mine)
    assert [(d["scope"], d["dimension"], d["reporting"] - d["registry"]) for d in diffs] == [
        ("410928", "gender", 7), ("city", "gender", 7)]


def test_a_county_reader_sees_its_county_and_the_city_only():
    from services.reporting.domain.scope import may_see, scoped_delta, scoped_rows, scoped_snapshot

    assert may_see(None, "410922") and may_see("410928", "city") and may_see("410928", "410928")
    assert not may_see("410928", "410922")
    snap = {"seq": 5, "scopes": {"city": {}, "410928": {}, "410922": {}}}
    assert set(scoped_snapshot(snap, "410928")["scopes"]) == {"city", "410928"}
    assert scoped_snapshot(snap, None) is snap
    rows = [{"county_code": c} for c in ("410928", "410922", "city")]
    assert [r["county_code"] for r in scoped_rows(rows, "410928")] == ["410928", "city"]
    delta = {"seq": 9, "counts": [{"county": "410922", "dim": "d", "bucket": "b", "value": 1},
                                  {"county": "city", "dim": "d", "bucket": "b", "value": 3}],
             "facilities": [{"county": "410922", "facility_id": "F"}], "training": []}
    mine = scoped_delta(delta, "410928")
    assert mine == {"seq": 9, "counts": [delta["counts"][1]], "facilities": [], "training": []}
    # Nothing of the reader's scope left: no frame at all.
    assert scoped_delta({**delta, "counts": delta["counts"][:1]}, "410928") is None
    assert scoped_delta(delta, None) is delta


def test_facility_reports_on_their_way_are_left_out_and_a_changed_figure_is_found():
    from datetime import datetime, timedelta, timezone

    from services.reporting.domain.consistency import compare_facilities

    t0 = datetime(2026, 12, 2, 8, tzinfo=timezone.utc)

    def f(fid, at, beds=40, county="410928"):
        return {"county_code": county, "facility_id": fid, "reported_at": at, "facility_type": "institution",
                "beds": beds, "nursing_beds": 20, "occupied": 10}

    # F2's newer report and F3 are on their way; F1 agrees
    registry = [f("F1", t0), f("F2", t0 + timedelta(seconds=1), beds=50), f("F3", t0)]
    ours = [f("F1", t0), f("F2", t0)]
    assert compare_facilities(registry, ours) == ([], 2)
    # the same report with other figures, a report only reporting has, a report newer than the registry's
    tampered = [f("F1", t0, beds=49), f("F2", t0 + timedelta(seconds=1), beds=50), f("F9", t0),
                f("F3", t0 + timedelta(seconds=5))]
    diffs, in_flight = compare_facilities(registry, tampered)
    assert in_flight == 0
    assert [(d["bucket"], d["registry"] and d["registry"]["beds"], d["reporting"]["beds"]) for d in diffs] == [
        ("F1", 40, 49), ("F3", 40, 40), ("F9", None, 40)]


def test_training_records_on_their_way_are_left_out_and_tampered_totals_are_found():
    from services.reporting.domain.consistency import compare_training

    registry = [{"county_code": "410928", "event_id": e, "trainees": n} for e, n in (("a", 10), ("b", 5), ("c", 7))]
    ours = registry[:2]  # "c" still on its way
    assert compare_training(registry, ours, {"410928": {"trainees": 15, "sessions": 2}}) == ([], 1)
    diffs, _ = compare_training(registry, ours, {"410928": {"trainees": 20, "sessions": 2}})
    assert [(d["dimension"], d["bucket"], d["registry"], d["reporting"]) for d in diffs] == [
        ("training", "trainees", 15, 20)]
    # a record reporting has and the registry never accepted, or with other figures
    odd = ours + [{"county_code": "410928", "event_id": "z", "trainees": 1}]
    diffs, _ = compare_training(registry, [{**ours[0], "trainees": 11}, *odd[1:]],
                                {"410928": {"trainees": 17, "sessions": 3}})
    assert {(d["dimension"], d["bucket"]) for d in diffs} == {("training_record", "a"), ("training_record", "z"),
                                                               ("training", "trainees"), ("training", "sessions")}
