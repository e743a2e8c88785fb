"""The alerts service's workers: four consumers (the ingest stream, where detection runs; the
same stream again for alarms alone (the alarm lane); the residents stream, its own projection, apart so a registry catch-up never delays an SOS; the orders
stream), and the leader-run scheduler (escalation, lateness, no-activity and visit timers, webhook
deliveries). Run inside the API process by default (RUN_WORKERS_IN_API=true) or alone with `eldercare worker alerts`."""

from __future__ import annotations

import asyncpg

from services.alerts.handlers import (
    ALARM_TYPES, INGEST_TYPES, ORDER_TYPES, READING_TYPES, RESIDENT_TYPES, SNAPSHOT_TYPES, apply_ingest, apply_orders,
    apply_residents,
)
from services.alerts.parsing import envelope_parser
from services.alerts.scheduler import Scheduler
from shared.messaging.consumer import EventConsumer, _Parsed
from shared.messaging.topics import INGEST, ORDERS, RESIDENTS
from shared.service import ServiceRuntime

INGEST_CONSUMER = "alerts-ingest"
RESIDENTS_CONSUMER = "alerts-residents"
ORDERS_CONSUMER = "alerts-orders"
# An SOS is due on the stream within a fraction of a second: the broker may hold an empty fetch
# this long (Tansu does not answer early).
FETCH_MAX_WAIT_MS = 20
# Records per detection batch. The projection read and the watermark upsert cost a row per distinct
# resident in the batch: at 20,000 residents a batch of 20,000 readings touches 0.63 rows a reading,
# one of 5,000 0.88. The alarm lane fetches as much but parses only alarms.
INGEST_BATCH = 20000
RESIDENTS_BATCH = 5000


class DetectionConsumer(EventConsumer):
    """Readings, position fixes and visits. Alarms are the alarm lane's alone: were this consumer to
    claim an SOS in its batch's inbox too, the lane's claim would wait on the row lock until the
    whole batch of readings committed (seconds behind a backlog). It still parses every record,
    so a malformed one, alarms included, is dead-lettered once, here."""

    def _parse(self, record, dead):
        item = super()._parse(record, dead)
        if item is not None and item.event.type in ALARM_TYPES:
            return None
        return item


def ingest_consumer(pool: asyncpg.Pool, bootstrap: str, name: str = INGEST_CONSUMER) -> EventConsumer:
    """Detection: the ingest stream's consumer (the benchmark runs this same one)."""
    return DetectionConsumer(
        name=name, topics=[INGEST.name], handlers={}, batch_handler=apply_ingest,
        batch_types=INGEST_TYPES, fast_parse=envelope_parser(INGEST_TYPES), inbox_exempt_types=READING_TYPES,
        pipeline=True, bisect_failures=True, fetch_max_wait_ms=FETCH_MAX_WAIT_MS, pool=pool,
        bootstrap=bootstrap, batch_size=INGEST_BATCH, schema="alerts")


ALARM_GROUP = "alerts-ingest-alarms"
# The wire names of the alarm types: a record without one is passed over before any parsing.
_ALARM_MARKS = tuple(t.encode() for t in ALARM_TYPES)


class AlarmLane(EventConsumer):
    """The ingest topic read a second time, in its own group, for SOS, falls and wearable alarms
    only: an SOS waits for the alarms before it, never for a backlog of readings. The lane is the
    only one to apply alarms (its own committed offsets, so none is lost), by the inbox under the
    detection consumer's name; readings, and every record it cannot parse, are left to the
    detection consumer (which dead-letters the bad ones once)."""

    def _parse(self, record, dead):  # noqa: ARG002 - never dead-letters
        raw = record.value or b""
        if not any(mark in raw for mark in _ALARM_MARKS):
            return None
        try:
            event, data = self.fast_parse(raw)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - the detection consumer names the reason
            return None
        return _Parsed(record, event, data, None)


def alarm_lane(pool: asyncpg.Pool, bootstrap: str, name: str = INGEST_CONSUMER) -> EventConsumer:
    return AlarmLane(
        name=name, group_id=ALARM_GROUP if name == INGEST_CONSUMER else f"{name}-alarms", topics=[INGEST.name],
        handlers={}, batch_handler=apply_ingest, batch_types=ALARM_TYPES, fast_parse=envelope_parser(ALARM_TYPES),
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS, pool=pool, bootstrap=bootstrap, batch_size=INGEST_BATCH,
        schema="alerts")


def build_consumers(runtime: ServiceRuntime) -> list[EventConsumer]:
    assert runtime.db.pool is not None
    bootstrap = runtime.settings.kafka_bootstrap_servers
    scheduler = Scheduler(runtime.db)
    runtime.state["scheduler"] = scheduler
    runtime.background.append(("scheduler", scheduler.run))
    return [
        ingest_consumer(runtime.db.pool, bootstrap),
        alarm_lane(runtime.db.pool, bootstrap),
        EventConsumer(
            name=RESIDENTS_CONSUMER, topics=[RESIDENTS.name], handlers={}, batch_handler=apply_residents,
            batch_types=RESIDENT_TYPES, fast_parse=envelope_parser(RESIDENT_TYPES), inbox_exempt_types=SNAPSHOT_TYPES,
            pipeline=True, bisect_failures=True, pool=runtime.db.pool, bootstrap=bootstrap,
            batch_size=RESIDENTS_BATCH, schema="alerts"),
        EventConsumer(
            name=ORDERS_CONSUMER, topics=[ORDERS.name], handlers={}, batch_handler=apply_orders,
            batch_types=ORDER_TYPES, fast_parse=envelope_parser(ORDER_TYPES), pipeline=False, bisect_failures=True,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS, pool=runtime.db.pool, bootstrap=bootstrap,
            batch_size=1000, schema="alerts"),
    ]
