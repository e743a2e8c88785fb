"""The CloudEvents 1.0 envelope every topic carries (JSON structured mode)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from shared.observability import current_traceparent

SPECVERSION = "1.0"


def new_event_id() -> str:
    """A fresh event id (the idempotency key of an event)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CloudEvent(BaseModel):
    """CloudEvents 1.0 envelope with the platform's extensions `countycode` and `traceparent`.

    `data` stays a plain dict here; `shared.events.registry.parse_event` gives the typed model.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    specversion: str = Field(SPECVERSION, pattern=r"^1\.0$")
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    subject: str | None = Field(None, max_length=200)
    time: datetime | None = None
    datacontenttype: str | None = "application/json"
    dataschema: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    countycode: str | None = Field(None, max_length=12)
    traceparent: str | None = Field(None, max_length=55)

    def to_json(self) -> bytes:
        """The wire form (orjson: fast, and datetimes in RFC 3339)."""
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "CloudEvent":
        # pydantic-core parses and validates in one pass (faster than orjson + validate).
        return cls.model_validate_json(raw)


def make_event(
    type: str,
    source: str,
    data: BaseModel | dict[str, Any],
    *,
    subject: str | None = None,
    countycode: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> CloudEvent:
    """Build an envelope; the trace of the current request flows into it unless one is given."""
    payload = data.model_dump(mode="json", exclude_none=True) if isinstance(data, BaseModel) else data
    return CloudEvent(
        id=event_id or new_event_id(),
        source=source,
        type=type,
        subject=subject,
        time=time or utcnow(),
        data=payload,
        countycode=countycode,
        traceparent=traceparent or current_traceparent(),
    )
