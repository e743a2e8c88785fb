"""The event contracts: every example parses, the envelope round-trips, the AsyncAPI document is whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.events import EVENT_DATA_MODELS, CloudEvent, make_event, parse_data
from shared.events.asyncapi import build_asyncapi
from shared.messaging.topics import ALL_TOPICS, all_topic_names, topic_for_event_type

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "events" / "examples"


def test_every_event_type_has_an_example_that_parses_into_its_model():
    examples = {p.name.removesuffix(".json"): p for p in EXAMPLES.glob("*.json")}
    assert set(examples) == set(EVENT_DATA_MODELS)
    for event_type, path in examples.items():
        event = CloudEvent.model_validate(json.loads(path.read_text()))
        assert event.type == event_type
        assert isinstance(parse_data(event), EVENT_DATA_MODELS[event_type])


def test_envelope_round_trips_through_the_wire_form():
    event = make_event("eldercare.county.training.recorded.v1", "county/410928",
                       {"course": "护理员培训", "trainees": 30}, subject="county:410928", countycode="410928")
    again = CloudEvent.from_json(event.to_json())
    assert again == event
    assert json.loads(event.to_json())["specversion"] == "1.0"


def test_envelope_refuses_unknown_attributes():
    with pytest.raises(ValidationError) as err:
        CloudEvent.model_validate({"id": "1", "source": "x", "type": "t", "colour": "red"})
    assert err.value.errors()[0]["loc"] == ("colour",)


def test_facility_with_more_nursing_beds_than_beds_is_invalid():
    event = make_event("eldercare.county.facility.reported.v1", "county/410928",
                       {"facility_id": "f1", "facility_type": "township_home", "name": "敬老院",
                        "beds": 10, "nursing_beds": 12, "occupied": 3})
    with pytest.raises(ValidationError, match="nursing_beds cannot exceed beds"):
        parse_data(event)


def test_each_event_type_maps_to_exactly_one_topic():
    for event_type in EVENT_DATA_MODELS:
        topic = topic_for_event_type(event_type)
        assert topic in ALL_TOPICS
    assert topic_for_event_type("eldercare.resident.registered.v1").name == "eldercare.registry.residents.v1"
    assert "eldercare.registry.ingest.v1.dlq" in all_topic_names()


def test_asyncapi_document_names_every_topic_and_message():
    doc = build_asyncapi()
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == set(all_topic_names())
    assert len(doc["components"]["messages"]) == len(EVENT_DATA_MODELS)
    # every $ref resolves
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node = doc
        for key in ref.split("/"):
            node = node[key]
