"""Reporting's consumer: resident events and the county ingest stream, folded in batches; the
committed deltas go to the live-stream broadcaster."""

from __future__ import annotations

from services.reporting.handlers import FOLDED_TYPES, fold_batch
from services.reporting.stream import Broadcaster
from shared.messaging.consumer import EventConsumer
from shared.messaging.topics import INGEST, RESIDENTS
from shared.service import ServiceRuntime

CONSUMER = "reporting"


def broadcaster_of(runtime: ServiceRuntime) -> Broadcaster:
    return runtime.state.setdefault("broadcaster", Broadcaster())  # type: ignore[return-value]


def build_consumers(runtime: ServiceRuntime) -> list[EventConsumer]:
    assert runtime.db.pool is not None
    return [EventConsumer(
        name=CONSUMER,
        topics=[RESIDENTS.name, INGEST.name],
        handlers={},
        batch_handler=fold_batch,
        batch_types=FOLDED_TYPES,
        on_committed=broadcaster_of(runtime).publish,
        pool=runtime.db.pool,
        bootstrap=runtime.settings.kafka_bootstrap_servers,
        batch_size=runtime.settings.consumer_batch_size,
        schema="reporting",
    )]
