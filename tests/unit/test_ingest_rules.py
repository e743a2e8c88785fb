"""The ingest gateway's pure rules: the one-pass batch check agrees with the event-by-event one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import orjson
import pytest

from services.registry.domain.ingest import (
    FORWARD_NAMESPACE,
    Checked,
    Verdict,
    check_event,
    forward_envelope,
    forwarded_id,
    valid_batch,
)
from shared.events.county import COUNTY_EVENTS

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "events" / "examples"
COUNTIES = frozenset({"410928", "410922"})


def county_examples() -> list[dict]:
    return [json.loads((EXAMPLES / f"{t}.json").read_text()) for t in COUNTY_EVENTS]


def test_forwarded_id_is_the_uuid5_of_county_source_and_id():
    for county, source, event_id in [("410928", "county/410928", "1"), ("410922", "county/410922", str(uuid.uuid4())),
                                     ("410923", "县平台", "事件-7")]:
        assert forwarded_id(county, source, event_id) == str(
            uuid.uuid5(FORWARD_NAMESPACE, f"{county}\x1f{source}\x1f{event_id}"))
    # Two counties posting the same (source, id) forward two different events.
    assert forwarded_id("410928", "county/410928", "1") != forwarded_id("410922", "county/410928", "1")


@pytest.mark.parametrize("example", county_examples(), ids=lambda e: e["type"])
def test_a_valid_batch_is_checked_as_each_event_alone_would_be(example):
    typed = valid_batch(orjson.dumps([example]))
    assert typed is not None
    fast, slow = check_event(0, typed[0], "410928", COUNTIES), check_event(0, example, "410928", COUNTIES)
    assert type(fast) is type(slow)
    if isinstance(fast, Checked):
        assert (fast.resident_ref, fast.id_number) == (slow.resident_ref, slow.id_number)
        assert fast.verdict.status == slow.verdict.status == "accepted"
        assert forward_envelope(fast, "r", None, "t") == forward_envelope(slow, "r", None, "t")
    else:
        assert (fast.field, fast.reason) == (slow.field, slow.reason)


def test_one_bad_event_sends_the_batch_event_by_event_with_the_usual_reasons():
    good, *_ = county_examples()
    bad_data_other_county = {**good, "id": "2", "countycode": "410922", "data": {"kind": "nonsense"}}
    assert valid_batch(orjson.dumps([good, bad_data_other_county])) is None
    verdict = check_event(1, bad_data_other_county, "410928", COUNTIES)
    # The county is named before the data, as it always was: another county's event says nothing more.
    assert isinstance(verdict, Verdict) and verdict.field == "countycode" and verdict.forbidden


def test_an_event_without_data_is_accepted_when_its_type_needs_none():
    family_bed = json.loads((EXAMPLES / "eldercare.county.family_bed.established.v1.json").read_text())
    del family_bed["data"]
    assert valid_batch(orjson.dumps([family_bed])) is None
    assert isinstance(check_event(0, family_bed, "410928", COUNTIES), Checked)


def test_subject_is_a_resident_id_in_any_uuid_spelling():
    vitals = json.loads((EXAMPLES / "eldercare.county.device.vitals.v1.json").read_text())
    upper = check_event(0, {**vitals, "subject": vitals["subject"].upper()}, None, COUNTIES)
    assert isinstance(upper, Checked) and upper.resident_ref == vitals["subject"]
    typed = valid_batch(orjson.dumps([{**vitals, "subject": "resident-7"}]))
    assert typed is not None
    rejected = check_event(0, typed[0], None, COUNTIES)
    assert isinstance(rejected, Verdict) and rejected.field == "subject"


def test_a_nul_character_is_refused_naming_its_field():
    sos = json.loads((EXAMPLES / "eldercare.county.device.sos.v1.json").read_text())
    cases = [({**sos, "id": "a\x00b"}, "id"), ({**sos, "data": {"device_id": "X\x00"}}, "data.device_id")]
    for event, field in cases:
        assert valid_batch(orjson.dumps([event])) is None
        verdict = check_event(0, event, None, COUNTIES)
        assert isinstance(verdict, Verdict) and verdict.field == field and "NUL" in verdict.reason
