"""The county ingest gateway's rules (SPEC §3 county event types): check one posted event against
its schema and the caller's scope. Pure: the resolution of residents and de-duplication are I/O and
live in services/registry/ingest.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.events.county import COUNTY_EVENTS, COUNTY_LEVEL_TYPES
from shared.events.envelope import CloudEvent
from shared.idcard import IdNumberError, parse_id_number

MAX_EVENTS = 1000
# Forwarded ids are derived from (source, id): a retried batch forwards the same ids, so consumers
# de-duplicate it too, and two counties that both number their events from 1 never collide.
FORWARD_NAMESPACE = uuid.UUID("6f1f6c1e-7d0a-4e0f-9d55-0e1dca7e0000")
RESIDENT_UPSERTED = "eldercare.county.resident.upserted.v1"
FAMILY_BED = "eldercare.county.family_bed.established.v1"


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


def forwarded_id(source: str, event_id: str) -> str:
    return str(uuid.uuid5(FORWARD_NAMESPACE, f"{source}\x1f{event_id}"))


def _first_error(exc: ValidationError, prefix: str) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    field = f"{prefix}.{loc}" if loc and prefix else (loc or prefix or "event")
    return field, f"{field}: {err.get('msg')}"


def check_event(index: int, raw: Any, caller_county: str | None, known_counties: frozenset[str]) -> Checked | Verdict:
    """Schema and scope of one event. A county caller (caller_county set) may post only its own county."""
    verdict = Verdict(index=index, id=raw.get("id") if isinstance(raw, dict) else None)
    if not isinstance(raw, dict):
        return verdict.reject("event", "each event must be a JSON object (a CloudEvent)")
    try:
        event = CloudEvent.model_validate(raw)
    except ValidationError as exc:
        return verdict.reject(*_first_error(exc, ""))
    model = COUNTY_EVENTS.get(event.type)
    if model is None:
        return verdict.reject("type", f"type: '{event.type}' is not a county event type")
    if not event.countycode:
        return verdict.reject("countycode", "countycode: is required")
    if event.countycode not in known_counties:
        return verdict.reject("countycode", f"countycode: '{event.countycode}' is not a county of this city")
    if caller_county is not None and event.countycode != caller_county:
        return verdict.reject("countycode", f"countycode: '{event.countycode}' is not your county", forbidden=True)
    try:
        data = model.model_validate(event.data)
    except ValidationError as exc:
        return verdict.reject(*_first_error(exc, "data"))
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
        "id": forwarded_id(event.source, event.id),
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
