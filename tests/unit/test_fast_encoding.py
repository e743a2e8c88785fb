"""The hot paths' event encoding (fields_of + fast_event_json) gives the model path's bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from shared.events import EVENT_DATA_MODELS, CloudEvent
from shared.events.residents import ResidentRegistered, ResidentSnapshot
from shared.messaging.outbox import fast_event_json, fields_of

EXAMPLES = sorted((Path(__file__).parents[2] / "shared" / "events" / "examples").glob("*.json"))


def _fast(value):
    """What a hot path passes for a value: nested models as fields_of dicts, the rest as they are."""
    if isinstance(value, BaseModel):
        return fields_of(type(value))(**{name: _fast(getattr(value, name)) for name in type(value).model_fields})
    if isinstance(value, list):
        return [_fast(v) for v in value]
    return value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_fast_encoding_equals_the_model_path_on_every_example(path: Path):
    example = CloudEvent.from_json(path.read_bytes())
    data = EVENT_DATA_MODELS[example.type].model_validate(example.data)
    envelope = {name: getattr(example, name) for name in CloudEvent.model_fields if name != "data"}
    reference = CloudEvent(**envelope, data=data.model_dump(mode="json", exclude_none=True)).to_json()
    assert fast_event_json(**envelope, data=_fast(data)) == reference
    # and from JSON-mode values (strings for dates and times), as the importer and republish pass them
    assert fast_event_json(**envelope, data=data.model_dump(mode="json", exclude_none=True)) == reference


def test_examples_cover_every_event_type():
    assert {CloudEvent.from_json(p.read_bytes()).type for p in EXAMPLES} >= set(EVENT_DATA_MODELS)


def test_defaults_are_filled_and_none_left_out():
    resident = fields_of(ResidentSnapshot)(resident_id="r", county_code="410928", name="王秀英",
                                           birth_date="1945-03-15", gender="female", township="城关镇",
                                           village="东街社区", living_arrangement="alone", ability_level=None)
    assert resident == ResidentSnapshot.model_validate(resident).model_dump(mode="json", exclude_none=True)
    assert "ability_level" not in resident and resident["status"] == "active" and resident["categories"] == []
    assert list(fields_of(ResidentRegistered)(resident=resident)) == ["resident"]
