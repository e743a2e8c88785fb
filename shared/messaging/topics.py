"""The platform's topics (`eldercare.<service>.<stream>.v1`), each with its dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass, field

DLQ_SUFFIX = ".dlq"
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
# Dead letters wait for a person to look at them: a month, whatever their topic.
DLQ_RETENTION_MS = 30 * DAY_MS
DLQ_OUTBOX_RETENTION_HOURS: float | None = None  # OUTBOX_RETENTION_DAYS


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic and how long what it carries is kept: by the broker (`config`, the topic configs it
    is created with; Apache Kafka honours them, the embedded Tansu keeps everything in memory until
    the supervisor rolls it) and in the producing service's outbox (`outbox_retention_hours`, what
    a relay can replay into a broker that lost its log; None means OUTBOX_RETENTION_DAYS)."""

    name: str
    owner: str
    description: str
    event_prefixes: tuple[str, ...]
    config: dict[str, str] = field(default_factory=dict)
    outbox_retention_hours: float | None = None

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


RESIDENTS = Topic(
    "eldercare.registry.residents.v1", "registry",
    "Resident lifecycle: registered, updated, assessed, deceased, transferred (key: resident id).",
    ("eldercare.resident.",),
    # Compacted by resident id: the newest event of each resident is kept for ever (a rebuild needs
    # the current state, which the registry re-publishes as snapshots); older ones go once compacted.
    config={"cleanup.policy": "compact", "min.compaction.lag.ms": str(DAY_MS)},
)
INGEST = Topic(
    "eldercare.registry.ingest.v1", "registry",
    "County platform events accepted by the ingest gateway (key: resident id, or facility/county).",
    ("eldercare.county.",),
    # Mostly device telemetry (signs of life, vitals) at tens of events a second: a week on the broker
    # for a rebuild of reporting, but only hours in the outbox, which is replayed after a broker loss
    # to catch up consumers that were behind (they are seconds behind, not hours).
    config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    outbox_retention_hours=6.0,
)
ORDERS = Topic(
    "eldercare.orders.orders.v1", "orders",
    "Service orders: placed and every later transition, settlement (key: order id).",
    ("eldercare.order.",),
    config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
)
ALERTS = Topic(
    "eldercare.alerts.alerts.v1", "alerts",
    "Alert lifecycle: raised, updated, acknowledged, escalated, resolved (key: alert id).",
    ("eldercare.alert.",),
    config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
)

AGGREGATES = Topic(
    "eldercare.reporting.aggregates.v1", "reporting",
    "Reporting's aggregates for any screen to subscribe to: a delta per committed fold and periodic "
    "snapshots, sequence-numbered (key: aggregates, so one partition keeps them in order).",
    ("eldercare.reporting.aggregates.",),
    # Derived frames, sent without an outbox: followers read back the last 10,000 on start (about a
    # snapshot every 10 s), so a day is plenty; a rebuild never reads them.
    config={"cleanup.policy": "delete", "retention.ms": str(DAY_MS)},
)

ALL_TOPICS: tuple[Topic, ...] = (RESIDENTS, INGEST, ORDERS, ALERTS, AGGREGATES)


def all_topic_names() -> list[str]:
    """Every topic and its dead-letter topic."""
    return [name for t in ALL_TOPICS for name in (t.name, t.dlq)]


def topic_config(name: str) -> dict[str, str]:
    """The topic configs a topic (or its dead-letter topic) is created with; {} for one not ours."""
    for topic in ALL_TOPICS:
        if name == topic.name:
            return dict(topic.config)
        if name == topic.dlq:
            return {"cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS)}
    return {}


def outbox_retention_hours(name: str, default_hours: float) -> float:
    """How long a published outbox row of this topic is kept for replays (default: OUTBOX_RETENTION_DAYS)."""
    for topic in ALL_TOPICS:
        if name == topic.name and topic.outbox_retention_hours is not None:
            return min(topic.outbox_retention_hours, default_hours)
    return default_hours


def topic_for_event_type(event_type: str) -> Topic:
    """The topic an event type is published on."""
    for topic in ALL_TOPICS:
        if event_type.startswith(topic.event_prefixes):
            return topic
    raise KeyError(f"no topic carries event type {event_type!r}")
