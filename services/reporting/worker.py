"""Reporting's consumer: resident events, the county ingest stream and the orders and alerts
topics, folded in batches; the
committed deltas go onto the aggregates topic (publisher.py), which every API process follows."""

from __future__ import annotations

from services.reporting.handlers import FOLDED_TYPES, VERSIONED_TYPES, fold_batch
from services.reporting.parsing import envelope_parser
from services.reporting.stream import Broadcaster
from shared.messaging.consumer import EventConsumer
from shared.messaging.topics import ALERTS, INGEST, ORDERS, RESIDENTS
from shared.service import ServiceRuntime

CONSUMER = "reporting"
# Larger than the platform default: a batch costs a handful of round trips whatever its size, and
# a catch-up (first start, rebuild) folds hundreds of thousands of events. Live traffic is not
# held back by it: getmany returns what has arrived.
FOLD_BATCH_SIZE = 5000
# A delta is due on the live stream within a second of the event: the broker may hold an empty
# fetch this long (aiokafka's 500 ms default showed up as delay on Tansu, which does not answer
# early; on Kafka it only means more empty fetches while idle).
FETCH_MAX_WAIT_MS = 50


def broadcaster_of(runtime: ServiceRuntime) -> Broadcaster:
    return runtime.state.setdefault("broadcaster", Broadcaster())  # type: ignore[return-value]


def publisher_of(runtime: ServiceRuntime):
    from services.reporting.publisher import AggregatesPublisher

    return runtime.state.setdefault("publisher", AggregatesPublisher(runtime))


def build_consumers(runtime: ServiceRuntime) -> list[EventConsumer]:
    assert runtime.db.pool is not None
    return [EventConsumer(
        name=CONSUMER,
        topics=[RESIDENTS.name, INGEST.name, ORDERS.name, ALERTS.name],
        handlers={},
        batch_handler=fold_batch,
        batch_types=FOLDED_TYPES,
        fast_parse=envelope_parser(FOLDED_TYPES),
        inbox_exempt_types=VERSIONED_TYPES,
        pipeline=True,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        bisect_failures=True,
        on_committed=publisher_of(runtime).on_committed,
        pool=runtime.db.pool,
        bootstrap=runtime.settings.kafka_bootstrap_servers,
        batch_size=max(runtime.settings.consumer_batch_size, FOLD_BATCH_SIZE),
        schema="reporting",
    )]
