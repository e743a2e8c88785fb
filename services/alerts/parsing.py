"""One-pass parsing of the events alerts consumes: envelope and typed data validated together by
pydantic-core from the raw bytes (the generic path validates `data` a second time). The contracts
are the shared models, so validation is exactly as strict; anything that fails goes down the
consumer's generic path, which names the reason in the dead letter."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, create_model

from shared.events import EVENT_DATA_MODELS
from shared.events.envelope import CloudEvent


def envelope_parser(event_types: frozenset[str]):
    variants = tuple(
        create_model(f"Alerts_{t.replace('.', '_')}", __base__=CloudEvent, type=(Literal[t], ...),
                     data=(EVENT_DATA_MODELS[t], ...))
        for t in sorted(event_types) if t in EVENT_DATA_MODELS)
    adapter: TypeAdapter = TypeAdapter(Annotated[Union[variants], Field(discriminator="type")])

    def parse(raw: bytes) -> tuple[CloudEvent, BaseModel]:
        event = adapter.validate_json(raw)
        return event, event.data

    return parse
