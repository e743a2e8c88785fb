"""The idempotent consumer: a batch of records is applied in one database transaction together
with its inbox rows; offsets are committed only after that transaction commits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from shared.db import CONNECTION_ERRORS, connection_lost
from shared.events import UnknownEventType, parse_data
from shared.events.envelope import CloudEvent
from shared.messaging.kafka import disable_topic_auto_creation, topic_partitions
from shared.messaging.outbox import add_rows, dead_letter_row
from shared.observability import EVENTS_CONSUMED, EVENTS_DEAD_LETTERED, EVENTS_DUPLICATE, reset_traceparent, set_traceparent

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, CloudEvent, BaseModel], Awaitable[None]]
# A batch handler folds many events at once (one round trip instead of one per event) and may
# return something for `on_committed` (e.g. the deltas a live stream sends once they are durable).
BatchHandler = Callable[[asyncpg.Connection, list[tuple[CloudEvent, BaseModel]]], Awaitable[object]]
# A consumer's own one-pass parser for the types it knows (envelope and data at once). Raising
# anything sends the record down the generic path, which gives the dead-letter reason.
FastParser = Callable[[bytes], tuple[CloudEvent, BaseModel]]
# Errors that say "try again later", not "this event is bad": the batch is retried. The database
# going away (shared.db.CONNECTION_ERRORS: refused, shut down, crashed, recovering, statement
# cancelled or timed out, out of connection slots) is one of them.
TRANSIENT_ERRORS = (*CONNECTION_ERRORS, asyncpg.InterfaceError,
                    asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError,
                    asyncio.TimeoutError)


class Unprocessable(Exception):
    """A handler's verdict that an event can never be applied (it goes to the dead-letter topic)."""


Batch = dict[TopicPartition, list[ConsumerRecord]]
# How often a member without partitions checks whether its topics came back (see _watch_assignment).
ASSIGNMENT_WATCH_S = 5.0
UNASSIGNED_PATIENCE_S = 15.0
# Records parsed between yields to the event loop when pipelining (see `pipeline`).
PARSE_SLICE = 250


@dataclass(slots=True)
class _Parsed:
    record: ConsumerRecord
    event: CloudEvent
    data: BaseModel
    handler: Handler | None


@dataclass(slots=True)
class _Prepared:
    """A parsed batch, and the rewind generation it was fetched in."""

    generation: int
    parsed: list[_Parsed] = field(default_factory=list)
    dead: list[tuple] = field(default_factory=list)


def describe_error(exc: Exception) -> str:
    """A dead-letter reason a person can read: the field and message for validation errors."""
    if isinstance(exc, ValidationError):
        if exc.errors()[0].get("type") == "json_invalid":
            return f"not JSON: {exc.errors()[0].get('msg')}"
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ())) or "(event)"
            parts.append(f"{loc}: {err.get('msg')}")
        return "invalid event: " + "; ".join(parts)
    if isinstance(exc, orjson.JSONDecodeError):
        return f"not JSON: {exc}"
    return f"{type(exc).__name__}: {exc}"


class EventConsumer:
    """Consumes topics as one group and applies events through handlers keyed by event type."""

    def __init__(
        self,
        *,
        name: str,
        topics: list[str],
        handlers: dict[str, Handler],
        pool: asyncpg.Pool,
        bootstrap: str,
        batch_size: int = 1000,
        group_id: str | None = None,
        schema: str | None = None,
        batch_handler: BatchHandler | None = None,
        batch_types: frozenset[str] | set[str] = frozenset(),
        on_committed: Callable[[list[object]], None] | None = None,
        fast_parse: FastParser | None = None,
        inbox_exempt_types: frozenset[str] | set[str] = frozenset(),
        pipeline: bool = False,
        fetch_max_wait_ms: int = 500,
        bisect_failures: bool = False,
    ) -> None:
        self.name = name
        self.topics = topics
        self.handlers = handlers
        self.pool = pool
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.group_id = group_id or name
        self.schema = schema
        self.batch_handler = batch_handler
        self.batch_types = frozenset(batch_types)
        self.on_committed = on_committed
        self.fast_parse = fast_parse
        # Types whose handler is idempotent by itself (e.g. a snapshot with a version the projection
        # already holds changes nothing): no inbox row, which halves the rows written per event.
        self.inbox_exempt_types = frozenset(inbox_exempt_types)
        # Parse the next batch while the previous one's transaction runs: the CPU work here and
        # PostgreSQL's overlap. Offsets are still committed in order, each after its transaction.
        self.pipeline = pipeline
        # How long the broker may hold a fetch when nothing is new (aiokafka's default, 500 ms).
        # A live consumer wants less: a broker that does not answer early (Tansu) adds it as delay.
        self.fetch_max_wait_ms = fetch_max_wait_ms
        # A batch that fails is retried in halves rather than event by event: for a batch handler
        # folding thousands of events at once, one bad event then costs a few dozen folds, not
        # one fold per event of its batch.
        self.bisect_failures = bisect_failures
        self._generation = 0
        # Held while a batch is applied, so an operator's rebuild can pause consumption safely.
        self.lock = asyncio.Lock()
        self.applied_total = 0
        self.duplicates_total = 0
        self.connected = False
        self._consumer: AIOKafkaConsumer | None = None
        self._unassigned_since: float | None = None
        self._unassigned_patience = UNASSIGNED_PATIENCE_S

    async def run(self) -> None:
        """Consume until cancelled, reconnecting after broker outages. A subscribed topic that does
        not exist is waited for (start fails, we retry), never auto-created."""
        disable_topic_auto_creation()
        while True:
            consumer = AIOKafkaConsumer(
                *self.topics,
                bootstrap_servers=self.bootstrap,
                group_id=self.group_id,
                client_id=f"{self.name}-consumer",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.batch_size,
                fetch_max_wait_ms=self.fetch_max_wait_ms,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=1_000,
                metadata_max_age_ms=5_000,
                request_timeout_ms=15_000,
            )
            try:
                await asyncio.wait_for(consumer.start(), 15)
                self._consumer = consumer
                self.connected = True
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                log.warning("consumer %s lost the broker (%s); reconnecting", self.name, exc)
            except Exception:
                log.exception("consumer %s failed; restarting", self.name)
            finally:
                self.connected = False
                self._consumer = None
                try:
                    await asyncio.wait_for(consumer.stop(), 5)
                except Exception:  # noqa: BLE001 - stopping a broken client
                    pass
            await asyncio.sleep(1.0)

    async def lag(self) -> int | None:
        """Records not yet consumed on this member's partitions, by the broker's high watermark
        seen in the last fetch (None when not connected or not yet known)."""
        consumer = self._consumer
        if consumer is None:
            return None
        total = 0
        assignment = consumer.assignment()
        if not assignment:
            return None  # between a rebalance's revoke and assign: nothing is known, not "caught up"
        for tp in assignment:
            high = consumer.highwater(tp)
            if high is None:
                return None
            total += max(0, high - await consumer.position(tp))
        return total

    async def log_extent(self) -> dict[str, dict[int, tuple[int, int]]] | None:
        """{topic: {partition: (first offset, end offset)}} of this member's partitions as the broker
        holds them now (None when not connected): how far back a rebuild can read."""
        consumer = self._consumer
        if consumer is None:
            return None
        partitions = sorted(consumer.assignment())
        if not partitions:
            return None
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        out: dict[str, dict[int, tuple[int, int]]] = {}
        for tp in partitions:
            out.setdefault(tp.topic, {})[tp.partition] = (begins[tp], ends[tp])
        return out

    async def rewind(self) -> None:
        """Consume this member's partitions again from the beginning (for a rebuild); call it while
        holding `lock` so no batch is half-applied."""
        # Batches fetched before the rewind are dropped, not applied after it (they would land in
        # the emptied tables and mark their events as seen before the replay reaches them).
        self._generation += 1
        if self._consumer is not None:
            await self._consumer.seek_to_beginning()
            # Committed too: a rebalance right after the rewind (members rejoining after a broker
            # restart) resumes from the committed offsets, which would skip what came before them.
            partitions = list(self._consumer.assignment())
            if partitions:
                try:
                    await self._consumer.commit(await self._consumer.beginning_offsets(partitions))
                except KafkaError as exc:
                    log.warning("consumer %s: could not commit the rewind (%s)", self.name, exc)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        inflight: tuple[Batch, asyncio.Task] | None = None  # only when pipelining
        next_watch = asyncio.get_running_loop().time() + ASSIGNMENT_WATCH_S
        try:
            while True:
                if not inflight and asyncio.get_running_loop().time() >= next_watch:
                    next_watch = asyncio.get_running_loop().time() + ASSIGNMENT_WATCH_S
                    await self._watch_assignment(consumer)
                batch = await consumer.getmany(timeout_ms=0 if inflight else 500, max_records=self.batch_size)
                prepared = await self._prepare(batch) if batch else None
                if inflight is not None:
                    settled = await self._settle(consumer, *inflight, later=batch)
                    inflight = None
                    if not settled:
                        continue  # positions moved back to the failed batch: this one comes again
                if prepared is None:
                    continue
                if self.pipeline:
                    inflight = (batch, asyncio.create_task(self._apply_prepared(prepared)))
                    await asyncio.sleep(0)  # let its first query go out before we parse the next batch
                else:
                    await self._settle(consumer, batch, self._apply_prepared(prepared))
        finally:
            if inflight is not None:
                inflight[1].cancel()

    async def _watch_assignment(self, consumer: AIOKafkaConsumer) -> None:
        """Raise (the run loop then starts a new client, which joins again) when this member has had
        no partition for a while although its topics exist. Seen after the embedded broker restarted
        empty and its topics were created again: aiokafka's member rejoins with an empty assignment
        and keeps it. A member idle only because its group has more members than partitions rejoins
        too, at growing intervals (15 s, 30 s, … 10 min), which costs the group one rebalance each."""
        now = asyncio.get_running_loop().time()
        if consumer.assignment():
            self._unassigned_since, self._unassigned_patience = None, UNASSIGNED_PATIENCE_S
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
            return
        if now - self._unassigned_since < self._unassigned_patience:
            return
        fresh = await asyncio.wait_for(topic_partitions(consumer), 10)
        if all(fresh.get(t) for t in self.topics):
            idle = now - self._unassigned_since
            self._unassigned_since = None
            self._unassigned_patience = min(self._unassigned_patience * 2, 600.0)
            raise KafkaError(f"no partition of {', '.join(self.topics)} assigned for {idle:.0f}s although "
                             "they exist; joining again")

    async def _settle(self, consumer: AIOKafkaConsumer, batch: Batch, applying: Awaitable[bool],
                      later: Batch | None = None) -> bool:
        """Wait for a batch's transaction, then commit its offsets. False when the database was
        unavailable: every partition is moved back to its first record not applied."""
        try:
            applied = await applying
        except TRANSIENT_ERRORS as exc:
            log.warning("consumer %s: database unavailable (%s); retrying the batch", self.name, exc)
            for b in (later or {}, batch):  # the earlier batch's offsets win where both have a partition
                for tp, records in b.items():
                    consumer.seek(tp, records[0].offset)
            await asyncio.sleep(1.0)
            return False
        if not applied:
            return True  # dropped after a rewind: nothing to commit
        try:
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
        except KafkaError as exc:
            # The effects are committed with their inbox rows; a redelivery is skipped there.
            log.info("consumer %s: offset commit failed (%s); redelivery will be de-duplicated", self.name, exc)
        return True

    async def apply_batch(self, batch: Batch) -> None:
        """Apply a batch in one transaction: parse, skip seen ids, apply, dead-letter the unusable."""
        await self._apply_prepared(await self._prepare(batch))

    async def _prepare(self, batch: Batch) -> _Prepared:
        prepared = _Prepared(self._generation)
        n = 0
        for records in batch.values():
            for record in records:
                item = self._parse(record, prepared.dead)
                if item is not None:
                    prepared.parsed.append(item)
                n += 1
                if self.pipeline and n % PARSE_SLICE == 0:
                    await asyncio.sleep(0)  # the batch in flight gets its answers from PostgreSQL meanwhile
        return prepared

    async def _apply_prepared(self, prepared: _Prepared) -> bool:
        parsed, dead = prepared.parsed, prepared.dead
        results: list[object] = []
        async with self.lock, self.pool.acquire() as conn:
            if prepared.generation != self._generation:
                return False
            async with conn.transaction():
                exempt = self.inbox_exempt_types
                fresh = await self._claim(conn, [p.event.id for p in parsed if p.event.type not in exempt])
                todo: list[_Parsed] = []
                for p in parsed:
                    if p.event.type in exempt:
                        todo.append(p)
                    elif p.event.id in fresh:
                        fresh.discard(p.event.id)
                        todo.append(p)
                    else:
                        self.duplicates_total += 1
                        EVENTS_DUPLICATE.labels(self.name).inc()
                await self._apply_all(conn, todo, dead, results)
                if dead:
                    dead = await self._first_dead_letters(conn, dead)
                    await add_rows(conn, dead, self.schema)
        if self.on_committed is not None and results:
            self.on_committed(results)
        by_type: dict[str, int] = {}
        for p in todo:
            by_type[p.event.type] = by_type.get(p.event.type, 0) + 1
        for event_type, n in by_type.items():
            EVENTS_CONSUMED.labels(self.name, event_type).inc(n)
        if dead:
            EVENTS_DEAD_LETTERED.labels(self.name).inc(len(dead))
        self.applied_total += len(todo)
        return True

    def _parse(self, record: ConsumerRecord, dead: list[tuple]) -> _Parsed | None:
        if self.fast_parse is not None:
            try:
                event, data = self.fast_parse(record.value or b"")
                handler = self.handlers.get(event.type)
                if handler is not None or event.type in self.batch_types:
                    return _Parsed(record, event, data, handler)
            except Exception:  # noqa: BLE001 - the generic path below names what is wrong
                pass
        try:
            event = CloudEvent.from_json(record.value or b"")
        except (ValidationError, ValueError) as exc:
            dead.append(self._dead_row(record, describe_error(exc)))
            return None
        handler = self.handlers.get(event.type)
        if handler is None and event.type not in self.batch_types:
            if event.type.startswith("eldercare."):
                return None  # another consumer's event on a shared topic
            dead.append(self._dead_row(record, f"unknown event type {event.type!r}", event.id))
            return None
        try:
            data = parse_data(event)
        except (ValidationError, UnknownEventType) as exc:
            dead.append(self._dead_row(record, describe_error(exc), event.id))
            return None
        return _Parsed(record, event, data, handler)

    async def _claim(self, conn: asyncpg.Connection, ids: list[str]) -> set[str]:
        """Insert inbox rows; the ids returned are the ones never applied before."""
        if not ids:
            return set()
        rows = await conn.fetch(
            "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::text[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            self.name, ids,
        )
        return {r["event_id"] for r in rows}

    async def _first_dead_letters(self, conn: asyncpg.Connection, dead: list[tuple]) -> list[tuple]:
        """The dead letters not sent before. One named by its event id is claimed in the inbox under
        its dead-letter id, so a redelivered bad event (an inbox-exempt snapshot has no inbox row of
        its own) is not dead-lettered twice. One known only by its offset always goes: after a broker
        loses its log, an offset may name another record."""
        by_event = [row[0] for row in dead if row[0] != self._offset_dead_id(row[4])]
        if not by_event:
            return dead
        fresh = await self._claim(conn, by_event)
        return [row for row in dead if row[0] in fresh or row[0] == self._offset_dead_id(row[4])]

    def _offset_dead_id(self, headers: dict) -> str:
        return (f"dlq:{self.name}:{headers['dlq-source-topic']}:{headers['dlq-source-partition']}:"
                f"{headers['dlq-source-offset']}")

    async def _apply_all(self, conn: asyncpg.Connection, todo: list[_Parsed], dead: list[tuple],
                         results: list[object]) -> None:
        # Optimistic: the whole batch under one savepoint; only if an event fails do we redo the
        # batch one savepoint per event (or, with `bisect_failures`, per half, recursively), so
        # one bad event costs its own effect, not the batch's.
        if not todo:
            return
        error = await self._attempt(conn, todo, results)
        if error is None:
            return
        if len(todo) == 1:
            p = todo[0]
            log.warning("consumer %s: event %s dead-lettered: %s", self.name, p.event.id, describe_error(error))
            dead.append(self._dead_row(p.record, describe_error(error), p.event.id))
            return
        middle = len(todo) // 2
        parts = [todo[:middle], todo[middle:]] if self.bisect_failures else [[p] for p in todo]
        for part in parts:
            await self._apply_all(conn, part, dead, results)

    async def _attempt(self, conn: asyncpg.Connection, todo: list[_Parsed],
                       results: list[object]) -> Exception | None:
        """Apply under a savepoint; the error if it failed (then nothing of it stays)."""
        try:
            async with conn.transaction():
                out = await self._call_all(conn, todo)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - a poison event must not block its partition
            if connection_lost(conn):  # the database went away mid-batch: not the event's fault
                raise
            return exc
        results.extend(out)
        return None

    async def _call_all(self, conn: asyncpg.Connection, todo: list[_Parsed]) -> list[object]:
        """Per-event handlers in order; the batch handler gets its types in one call."""
        out: list[object] = []
        batched = [(p.event, p.data) for p in todo if p.handler is None]
        for p in todo:
            if p.handler is not None:
                await self._call(conn, p)
        if batched and self.batch_handler is not None:
            result = await self.batch_handler(conn, batched)
            if result is not None:
                out.append(result)
        return out

    @staticmethod
    async def _call(conn: asyncpg.Connection, p: _Parsed) -> None:
        token = set_traceparent(p.event.traceparent)
        try:
            await p.handler(conn, p.event, p.data)
        finally:
            reset_traceparent(token)

    def _dead_row(self, record: ConsumerRecord, reason: str, event_id: str | None = None) -> tuple:
        return dead_letter_row(
            record.value, record.topic, record.partition, record.offset, record.key, self.name, reason,
            event_id=f"dlq:{self.name}:{event_id}" if event_id else None,
        )
