"""The aggregates topic (eldercare.reporting.aggregates.v1): the folding worker publishes every
committed delta and, every few seconds of activity, a snapshot; every reporting API process follows
the topic and serves /v1/stream and /v1/ws from it, so any number of API processes stream the same
frames with the same sequence numbers (a client resumes with Last-Event-ID on any of them).

The frames are derived figures, not a source of truth: the worker sends them straight after the
commit (no outbox, which would keep a row per fold for days). A frame lost while the broker is away
shows as a gap in the sequence, and a follower that sees one sends its clients a fresh snapshot from
the database.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.reporting import queries
from services.reporting.stream import Broadcaster
from shared.events.envelope import make_event
from shared.events.reporting import AGGREGATES_FRAME
from shared.messaging.kafka import make_producer, topic_partitions
from shared.messaging.topics import AGGREGATES
from shared.service import ServiceRuntime

log = logging.getLogger(__name__)
KEY = b"aggregates"  # one key: one partition, so the frames stay in sequence order
SNAPSHOT_EVERY_S = 10.0
# Frames a follower reads back from the topic on start, so a client of another process can resume.
REPLAY_FRAMES = 10_000
FETCH_MAX_WAIT_MS = 50
_BROKER_ERRORS = (KafkaError, OSError, asyncio.TimeoutError)


def frame_record(frame: dict, kind: str) -> bytes:
    event = make_event(AGGREGATES_FRAME, "reporting", {**frame, "kind": kind}, subject="aggregates",
                       event_id=f"reporting-aggregates-{kind}-{frame['seq']}-{time.time_ns()}")
    return event.to_json()


class AggregatesPublisher:
    """In the folding process: frames in commit order onto the topic, from one sender task."""

    def __init__(self, runtime: ServiceRuntime, today=None) -> None:
        self.runtime = runtime
        self.queue: asyncio.Queue[dict] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.producer = None  # while the sender task runs and the broker answers
        self.sent = 0

    def on_committed(self, deltas: list[object]) -> None:
        for delta in deltas:
            self.queue.put_nowait(delta.as_dict() if hasattr(delta, "as_dict") else delta)  # type: ignore[arg-type]
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run(), name="reporting-aggregates-publisher")
            self.runtime.tasks.append(self.task)

    async def run(self) -> None:
        next_snapshot = 0.0
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(self.queue.get(), timeout=SNAPSHOT_EVERY_S)
                except asyncio.TimeoutError:
                    frame = None  # quiet: the snapshot below keeps late subscribers supplied
                try:
                    if self.producer is None:
                        self.producer = make_producer(self.runtime.settings.kafka_bootstrap_servers,
                                                 "reporting-aggregates")
                        await self.producer.start()
                    if frame is not None:
                        await self.producer.send(AGGREGATES.name, frame_record(frame, "delta"), key=KEY)
                        self.sent += 1
                    if time.monotonic() >= next_snapshot and self.queue.empty():
                        next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
                        async with self.runtime.db.transaction() as conn:
                            snap = await queries.aggregates(conn, _today())
                        await self.producer.send(AGGREGATES.name, frame_record(
                            {"seq": snap["seq"], "scopes": snap["scopes"]}, "snapshot"), key=KEY)
                except _BROKER_ERRORS as exc:
                    # The frame is lost: followers see the gap and resynchronise their clients.
                    log.warning("aggregates topic unavailable (%s); frames resume when it is back", exc)
                    await _stop_quietly(self.producer)
                    self.producer = None
                    await asyncio.sleep(0.5)
        finally:
            # Cancelled at shutdown while waiting for a frame, or ended by a database error (the
            # next publish() starts the task again): the producer is closed either way.
            await _stop_quietly(self.producer)
            self.producer = None


async def _stop_quietly(producer) -> None:
    if producer is not None:
        try:
            await asyncio.wait_for(producer.stop(), 5)
        except Exception:  # noqa: BLE001 - a producer of a dead broker may not stop cleanly
            pass

def _today():
    from services.reporting.api.aggregates import today_local

    return today_local()


class AggregatesFollower:
    """In every API process: the topic's frames into this process's broadcaster."""

    def __init__(self, runtime: ServiceRuntime, broadcaster: Broadcaster) -> None:
        self.runtime = runtime
        self.broadcaster = broadcaster
        self.received = 0

    async def run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.runtime.settings.kafka_bootstrap_servers,
                                        client_id="reporting-aggregates-follower", group_id=None,
                                        enable_auto_commit=False, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                                        request_timeout_ms=10_000)
            try:
                await consumer.start()
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except _BROKER_ERRORS as exc:
                log.warning("cannot follow the aggregates topic (%s); retrying", exc)
            finally:
                await consumer.stop()
            await asyncio.sleep(1.0)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        partitions: set[int] = set()
        while not partitions:
            partitions = (await topic_partitions(consumer)).get(AGGREGATES.name, set())
            if not partitions:
                await asyncio.sleep(0.5)  # created at start, and by the embedded broker's supervisor after a loss
        tps = [TopicPartition(AGGREGATES.name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - REPLAY_FRAMES))
        log.info("following the aggregates topic", extra={"fields": {"partitions": len(tps)}})
        while True:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for record in records:
                    self._receive(record.value)

    def _receive(self, raw: bytes | None) -> None:
        if not raw:
            return
        try:
            data = orjson.loads(raw)["data"]
            kind = data.pop("kind")
            data.pop("scopes", None)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("aggregates topic: a record that is not a frame was skipped")
            return
        self.received += 1
        if kind == "delta":
            self.broadcaster.receive(data)
        else:
            self.broadcaster.receive_snapshot(data["seq"])
