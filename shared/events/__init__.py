"""The platform's event contracts: one envelope, one typed data model per event type and version."""

from __future__ import annotations

from pydantic import BaseModel

from shared.events.alerts import ALERT_EVENTS
from shared.events.county import COUNTY_EVENTS
from shared.events.envelope import CloudEvent, make_event, new_event_id
from shared.events.orders import ORDER_EVENTS
from shared.events.reporting import REPORTING_EVENTS
from shared.events.residents import RESIDENT_EVENTS

EVENT_DATA_MODELS: dict[str, type[BaseModel]] = {
    **RESIDENT_EVENTS,
    **COUNTY_EVENTS,
    **ORDER_EVENTS,
    **ALERT_EVENTS,
    **REPORTING_EVENTS,
}


class UnknownEventType(ValueError):
    """The envelope names a type no contract describes."""


def data_model_for(event_type: str) -> type[BaseModel]:
    try:
        return EVENT_DATA_MODELS[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}") from None


def parse_data(event: CloudEvent) -> BaseModel:
    """Validate an envelope's data against its type's model (raises pydantic.ValidationError)."""
    return data_model_for(event.type).model_validate(event.data)


__all__ = [
    "CloudEvent",
    "EVENT_DATA_MODELS",
    "UnknownEventType",
    "data_model_for",
    "make_event",
    "new_event_id",
    "parse_data",
]
