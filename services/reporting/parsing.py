"""Parsing the events reporting folds in one pass: envelope and typed data validated together by
pydantic-core from the raw bytes (STYLE 13: one discriminated union, one TypeAdapter), instead of
an envelope with a dict for `data` that is then validated a second time. The contracts are the
shared models themselves, so validation is exactly as strict as the generic path."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, create_model

from shared.events import EVENT_DATA_MODELS
from shared.events.envelope import CloudEvent


def _typed_envelope(event_type: str) -> type[CloudEvent]:
    """The envelope of one event type, its `data` typed by that type's contract."""
    return create_model(f"Folded_{event_type.replace('.', '_')}", __base__=CloudEvent,
                        type=(Literal[event_type], ...), data=(EVENT_DATA_MODELS[event_type], ...))


def envelope_parser(event_types: frozenset[str]):
    """A parser for `event_types`: raw bytes to (envelope, data). Anything else raises (another
    type, bad JSON, a contract violation): the consumer's generic path then dead-letters it
    with the field and message, as for every other consumer."""
    variants = tuple(_typed_envelope(t) for t in sorted(event_types))
    adapter: TypeAdapter = TypeAdapter(Annotated[Union[variants], Field(discriminator="type")])

    def parse(raw: bytes) -> tuple[CloudEvent, BaseModel]:
        event = adapter.validate_json(raw)
        return event, event.data

    return parse
