"""The county ingest gateway's rules (SPEC §3 county event types): check a posted batch, or one
event, against its schema and the caller's scope. Pure: the resolution of residents and
de-duplication are I/O and live in services/registry/ingest.py."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model

from shared.events.county import COUNTY_EVENTS, COUNTY_LEVEL_TYPES
from shared.events.envelope import CloudEvent
from shared.idcard import IdNumberError, parse_id_number

MAX_EVENTS = 1000
# Forwarded ids are derived from the claim key (county, source, id): a retried batch forwards the
# same ids, so consumers de-duplicate it too, and two counties that use the same ids (even under
# the same source string) never collide in a consumer's inbox.
FORWARD_NAMESPACE = uuid.UUID("6f1f6c1e-7d0a-4e0f-9d55-0e1dca7e0000")
_FORWARD_PREFIX = FORWARD_NAMESPACE.bytes
RESIDENT_UPSERTED = "eldercare.county.resident.upserted.v1"
FAMILY_BED = "eldercare.county.family_bed.established.v1"
# The form str(uuid.UUID(...)) gives; a subject already in it needs no parsing.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _typed_envelope(event_type: str, model: type[BaseModel]) -> type[CloudEvent]:
    """The envelope with its `type` fixed and its `data` typed, so one validator checks both."""
    return create_model(f"{model.__name__}Event", __base__=CloudEvent,
                        type=(Literal[event_type], ...), data=(model, ...))  # type: ignore[call-overload]


# Every county event type as one union discriminated by `type` (STYLE #13): pydantic-core checks a
# whole batch, envelope and data, in one pass instead of two Python-level validations per event.
_TYPED_ENVELOPES = tuple(_typed_envelope(t, m) for t, m in COUNTY_EVENTS.items())
_COUNTY_EVENT = Annotated[Union[_TYPED_ENVELOPES], Field(discriminator="type")]  # noqa: UP007
_ONE_EVENT = TypeAdapter(_COUNTY_EVENT)
_BATCH = TypeAdapter(list[_COUNTY_EVENT])


@dataclass(slots=True)
class Verdict:
    """What the gateway says of one posted event."""

    index: int
    id: str | None
    status: str = "accepted"  # accepted | duplicate | rejected
    reason: str | None = None
    field: str | None = None
    forbidden: bool = False
    resident_id: str | None = None

    def reject(self, field: str, reason: str, forbidden: bool = False) -> "Verdict":
        self.status, self.field, self.reason, self.forbidden = "rejected", field, reason, forbidden
        return self

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "id": self.id, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
            out["field"] = self.field
        if self.resident_id:
            out["resident_id"] = self.resident_id
        return out


@dataclass(slots=True)
class Checked:
    """A posted event that passed its schema and scope checks, waiting for resident resolution."""

    verdict: Verdict
    event: CloudEvent
    data: BaseModel
    resident_ref: str | None = None  # a resident id (subject) …
    id_number: str | None = None  # … or an ID number to resolve


def claim_key(checked: Checked) -> tuple[str, str, str]:
    """What makes a posted event a repeat: (county, source, id). The county is bound to the caller's
    token by the scope check (see services/registry/ingest.py for why `source` alone is not enough)."""
    event = checked.event
    return event.countycode, event.source, event.id  # type: ignore[return-value]


def forwarded_id(county: str, source: str, event_id: str) -> str:
    """uuid5(FORWARD_NAMESPACE, county + US + source + US + id), written out by hand: uuid.uuid5 and
    str(UUID) cost three times as much, once per forwarded event (RFC 4122 §4.3: SHA-1, version 5,
    variant 10)."""
    name = f"{county}\x1f{source}\x1f{event_id}".encode()
    digest = bytearray(hashlib.sha1(_FORWARD_PREFIX + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def valid_batch(raw_json: bytes) -> list[CloudEvent] | None:
    """Every event of a JSON array, typed, if all of them pass their schemas; None if any does not
    (the caller then checks event by event, to say which field of which event is at fault)."""
    if b"\\u0000" in raw_json:
        return None  # JSON carries a NUL only as this escape; check_event names the field
    try:
        return _BATCH.validate_json(raw_json)
    except ValidationError:
        return None


def _first_error(exc: ValidationError, prefix: str) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    field = f"{prefix}.{loc}" if loc and prefix else (loc or prefix or "event")
    return field, f"{field}: {err.get('msg')}"


def check_event(index: int, raw: Any, caller_county: str | None, known_counties: frozenset[str]) -> Checked | Verdict:
    """Schema and scope of one event: a CloudEvent from valid_batch, or a posted JSON value.
    A county caller (caller_county set) may post only its own county."""
    if isinstance(raw, CloudEvent):
        return _check_scope(Verdict(index=index, id=raw.id), raw, raw.data, caller_county, known_counties)
    verdict = Verdict(index=index, id=raw.get("id") if isinstance(raw, dict) else None)
    if not isinstance(raw, dict):
        return verdict.reject("event", "each event must be a JSON object (a CloudEvent)")
    if (field := _nul_field(raw, "")) is not None:
        return verdict.reject(field, f"{field}: must not contain the NUL character")
    try:
        event = _ONE_EVENT.validate_python(raw)
    except ValidationError:
        return _check_step_by_step(verdict, raw, caller_county, known_counties)
    return _check_scope(verdict, event, event.data, caller_county, known_counties)


def _nul_field(value: Any, path: str) -> str | None:
    """The first field whose text holds a NUL character: PostgreSQL text cannot store one, and no
    county field has a use for it."""
    if isinstance(value, str):
        return (path or "event") if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path}.{key}" if path else key
        found = _nul_field(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _check_step_by_step(verdict: Verdict, raw: dict, caller_county: str | None,
                        known_counties: frozenset[str]) -> Checked | Verdict:
    """Envelope first, then its type and county, then its data: the order the reasons are given in,
    so a caller hears "not your county" before anything about the data of another county's event.
    (It also accepts an event without `data` whose type needs none, which the union does not.)"""
    try:
        event = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        return verdict.reject(*_first_error(exc, ""))
    model = COUNTY_EVENTS.get(event.type)
    if model is None:
        return verdict.reject("type", f"type: '{event.type}' is not a county event type")
    if (problem := _county_problem(event, caller_county, known_counties)) is not None:
        return verdict.reject(*problem)
    try:
        data = model.model_validate(event.data)
    except ValidationError as exc:
        return verdict.reject(*_first_error(exc, "data"))
    return _check_scope(verdict, event, data, caller_county, known_counties)


def _county_problem(event: CloudEvent, caller_county: str | None,
                    known_counties: frozenset[str]) -> tuple[str, str, bool] | None:
    if not event.countycode:
        return "countycode", "countycode: is required", False
    if event.countycode not in known_counties:
        return "countycode", f"countycode: '{event.countycode}' is not a county of this city", False
    if caller_county is not None and event.countycode != caller_county:
        return "countycode", f"countycode: '{event.countycode}' is not your county", True
    return None


def _check_scope(verdict: Verdict, event: CloudEvent, data: Any, caller_county: str | None,
                 known_counties: frozenset[str]) -> Checked | Verdict:
    """A schema-valid event (data: its type's model): its county, and how it names its resident."""
    if (problem := _county_problem(event, caller_county, known_counties)) is not None:
        return verdict.reject(*problem)
    checked = Checked(verdict=verdict, event=event, data=data)
    if event.type in COUNTY_LEVEL_TYPES:
        return checked
    id_number = getattr(data, "id_number", None)
    if event.type == RESIDENT_UPSERTED:
        if not id_number:
            return verdict.reject("data.id_number", "data.id_number: is required to upsert a resident")
        if data.county_code != event.countycode:  # type: ignore[attr-defined]
            return verdict.reject("data.county_code", "data.county_code: must equal the event's countycode")
    if id_number:
        try:
            checked.id_number = parse_id_number(id_number).id_number
        except IdNumberError as exc:
            return verdict.reject("data.id_number", f"data.id_number: {exc.message}")
    elif event.subject:
        if _CANONICAL_UUID.fullmatch(event.subject):
            checked.resident_ref = event.subject
        else:
            try:
                checked.resident_ref = str(uuid.UUID(event.subject))
            except ValueError:
                return verdict.reject("subject", "subject: is not a resident id")
    else:
        return verdict.reject("subject", "subject: name the resident by subject (resident id) or data.id_number")
    return checked


def forward_key(checked: Checked, resident_id: str | None) -> str:
    """The record key: the resident, else the facility, else the county."""
    if resident_id:
        return resident_id
    facility = getattr(checked.data, "facility_id", None)
    if facility:
        return f"facility:{checked.event.countycode}:{facility}"
    return f"county:{checked.event.countycode}"


def forward_envelope(checked: Checked, resident_id: str | None, traceparent: str | None, now_iso: str) -> dict:
    """The event as it goes on the ingest topic: resolved to a resident id, without the ID number."""
    event = checked.event
    data = checked.data.model_dump(mode="json", exclude_none=True)
    data.pop("id_number", None)
    envelope = {
        "specversion": "1.0",
        "id": forwarded_id(*claim_key(checked)),
        "source": event.source,
        "type": event.type,
        "subject": forward_key(checked, resident_id),
        "time": event.time.isoformat() if event.time else now_iso,
        "datacontenttype": "application/json",
        "data": data,
        "countycode": event.countycode,
    }
    if event.traceparent or traceparent:
        envelope["traceparent"] = event.traceparent or traceparent
    return envelope
