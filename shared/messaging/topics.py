"""The platform's topics (`eldercare.<service>.<stream>.v1`), each with its dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    owner: str
    description: str
    event_prefixes: tuple[str, ...]

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


RESIDENTS = Topic(
    "eldercare.registry.residents.v1", "registry",
    "Resident lifecycle: registered, updated, assessed, deceased, transferred (key: resident id).",
    ("eldercare.resident.",),
)
INGEST = Topic(
    "eldercare.registry.ingest.v1", "registry",
    "County platform events accepted by the ingest gateway (key: resident id, or facility/county).",
    ("eldercare.county.",),
)
ORDERS = Topic(
    "eldercare.orders.orders.v1", "orders",
    "Service orders: placed and every later transition, settlement (key: order id).",
    ("eldercare.order.",),
)
ALERTS = Topic(
    "eldercare.alerts.alerts.v1", "alerts",
    "Alert lifecycle: raised, updated, acknowledged, escalated, resolved (key: alert id).",
    ("eldercare.alert.",),
)

AGGREGATES = Topic(
    "eldercare.reporting.aggregates.v1", "reporting",
    "Reporting's aggregates for any screen to subscribe to: a delta per committed fold and periodic "
    "snapshots, sequence-numbered (key: aggregates, so one partition keeps them in order).",
    ("eldercare.reporting.aggregates.",),
)

ALL_TOPICS: tuple[Topic, ...] = (RESIDENTS, INGEST, ORDERS, ALERTS, AGGREGATES)


def all_topic_names() -> list[str]:
    """Every topic and its dead-letter topic."""
    return [name for t in ALL_TOPICS for name in (t.name, t.dlq)]


def topic_for_event_type(event_type: str) -> Topic:
    """The topic an event type is published on."""
    for topic in ALL_TOPICS:
        if event_type.startswith(topic.event_prefixes):
            return topic
    raise KeyError(f"no topic carries event type {event_type!r}")
