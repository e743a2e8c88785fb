"""The outbox relay: publishes committed outbox rows in id order, and replays them when the
broker has lost its log (the embedded broker keeps it in memory; any broker can be rebuilt)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from shared.db import CONNECTION_ERRORS, connect
from shared.messaging.kafka import make_probe_consumer, make_producer, topic_partitions, topic_problems
from shared.messaging.outbox import encode_headers
from shared.messaging.partitioning import partition_for
from shared.messaging.schema import notify_channel
from shared.messaging.topics import all_topic_names, outbox_retention_hours
from shared.observability import OUTBOX_PENDING, OUTBOX_PUBLISHED, OUTBOX_REPLAYS

log = logging.getLogger(__name__)
_BROKER_ERRORS = (KafkaError, OSError, asyncio.TimeoutError)
# Pauses between reconnection attempts while the database is away.
DB_RETRY_MIN_S, DB_RETRY_MAX_S = 0.25, 2.0
# How often a running replay says how far it is.
REPLAY_LOG_INTERVAL_S = 5.0
# After a loss, how long the topics must stay as configured before the replay writes into them.
# Records the embedded broker acknowledged while its supervisor was still creating the topics
# were seen to vanish a moment later (offsets starting over), which cost a second replay.
TOPIC_SETTLE_S = 1.0


class TopicsNotReady(Exception):
    """A topic the relay publishes to is missing or has another partition count: nothing is sent
    until it is right (the embedded broker's supervisor recreates it; on Kafka an operator does)."""


def acks_went_backwards(highs: dict[tuple[str, int], int], acks: Sequence[tuple[str, int, int]]) -> bool:
    """True when the broker acknowledged an offset at or below one it acknowledged before:
    offsets only grow, so the partition's log was lost (pure; unit-tested)."""
    return any(offset <= highs.get((topic, partition), -1) for topic, partition, offset in acks)


def end_offsets_went_backwards(
    floors: dict[tuple[str, int], int], end_offsets: dict[tuple[str, int], int | None]
) -> bool:
    """True when a partition we published to is gone (None) or ends at or before a record we know
    it holds. The floor is the first offset of our latest round, not the last: Tansu answers
    ListOffsets(latest) with the base offset of the last record batch + 1, which is below the
    last offset whenever the last batch holds several records (Kafka answers last offset + 1)."""
    for tp, floor in floors.items():
        end = end_offsets.get(tp)
        if end is None or end <= floor:
            return True
    return False


def ack_ranges(acks: Sequence[tuple[str, int, int]]) -> dict[tuple[str, int], tuple[int, int]]:
    """(lowest, highest) acknowledged offset per partition in one publish round."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, offset in acks:
        low, high = ranges.get((topic, partition), (offset, offset))
        ranges[(topic, partition)] = (min(low, offset), max(high, offset))
    return ranges


@dataclass(frozen=True, slots=True)
class Replay:
    """A replay of the retained outbox into a broker that lost its log: every row with an id in
    (position, end] is sent again, in id order, before any newer row (persisted in relay_progress,
    so a new leader or a restarted relay carries on where it stopped)."""

    start: int      # the first id is start + 1
    position: int   # the last id sent and acknowledged
    end: int        # the newest id when the loss was noticed
    losses: int     # losses noticed so far (the number of this replay)

    @property
    def done(self) -> bool:
        return self.position >= self.end


def replay_after_loss(current: Replay | None, first_id: int | None, last_id: int | None, losses: int) -> Replay | None:
    """The replay to run once a loss is noticed (pure; unit-tested). Everything retained goes again,
    from the oldest row: a loss in the middle of a replay empties the log again, and a consumer that
    had not yet read the part already replayed would otherwise never see it (the inboxes drop what
    a consumer had applied). The end grows to cover rows written since the first loss."""
    if last_id is None:
        return None  # nothing retained, nothing to replay
    start = (first_id or 1) - 1
    if current is not None:
        start = min(start, current.start)
        last_id = max(last_id, current.end)
    return Replay(start=start, position=start, end=last_id, losses=losses + 1)


def replay_advanced(replay: Replay, sent_ids: Sequence[int]) -> Replay:
    """The replay once the rows sent were acknowledged (pure; unit-tested)."""
    return Replay(replay.start, max([replay.position, *sent_ids]), replay.end, replay.losses)


def replay_progress(replay: Replay, to_go: int) -> dict[str, int]:
    """The figures a replay logs: ids covered so far and rows still to send."""
    return {"replayed_up_to": replay.position, "end": replay.end, "to_go": to_go}


class OutboxRelay:
    """One leader per schema (PostgreSQL advisory lock); woken by LISTEN/NOTIFY, polls as a fallback."""

    def __init__(
        self,
        *,
        service: str,
        database_url: str,
        schema: str,
        bootstrap: str,
        partitions: int = 8,
        replication: int = 1,
        batch_size: int = 2000,
        retention_days: float = 7.0,
        check_interval: float = 2.0,
        topics: list[str] | None = None,
        topic_retention_hours: dict[str, float] | None = None,
    ) -> None:
        self.service = service
        self.database_url = database_url
        self.schema = schema
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.replication = replication
        self.batch_size = batch_size
        self.retention_hours = retention_days * 24
        self.topic_retention_hours = topic_retention_hours or {}
        self.check_interval = check_interval
        self.topics = topics or all_topic_names()
        self._highs: dict[tuple[str, int], int] = {}
        self._floors: dict[tuple[str, int], int] = {}
        self.published_total = 0
        self.replays = 0
        self.replayed_total = 0  # rows sent by the current (or last) replay
        self.replay: Replay | None = None
        self.losses = 0
        # {topic: problem} while a topic is missing or has another partition count (for /readyz).
        self.topic_problems: dict[str, str] = {}
        self.is_leader = False
        self.broker_ok = False
        self._connected = False
        self._settle_topics = False  # set by a loss: wait for the topics to settle before sending

    async def run(self) -> None:
        """Publish until cancelled, surviving database and broker outages: while PostgreSQL is away
        it reconnects with a growing pause (0.25 s to 2 s), and takes up where the outbox says."""
        backoff = DB_RETRY_MIN_S
        while True:
            self._connected = False
            try:
                await self._run_as_leader()
            except asyncio.CancelledError:
                raise
            except (*CONNECTION_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if self._connected:
                    backoff = DB_RETRY_MIN_S  # it was connected: a new outage starts from the short pause
                log.warning("outbox relay lost its database connection (%s: %s); reconnecting in %.1fs",
                            type(exc).__name__, exc, backoff)
            except Exception:
                log.exception("outbox relay failed; restarting")
            self.is_leader = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, DB_RETRY_MAX_S)

    async def _run_as_leader(self) -> None:
        # application_name shows in pg_stat_activity which process leads (and holds the lock);
        # the statement timeout keeps a relay from waiting for ever on a server that stopped answering.
        conn = await connect(self.database_url, self.schema, timeout=10, command_timeout=60,
                             server_settings={"application_name": f"{self.service}-relay pid={os.getpid()}"})
        self._connected = True
        try:
            # Closing the connection releases the lock, so a killed leader hands over at once.
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"relay:{self.schema}"):
                await asyncio.sleep(2.0)
            self.is_leader = True
            log.info("outbox relay leads its schema", extra={"fields": {"schema": self.schema}})
            wake = asyncio.Event()
            await conn.add_listener(notify_channel(self.schema), lambda *_: wake.set())
            state = await conn.fetch("SELECT topic, partition, high_offset, floor_offset FROM relay_state")
            self._highs = {(r["topic"], r["partition"]): r["high_offset"] for r in state}
            self._floors = {(r["topic"], r["partition"]): r["floor_offset"] for r in state}
            await self._load_progress(conn)
            await self._publish_loop(conn, wake)
        finally:
            self.is_leader = False
            await conn.close()

    async def _publish_loop(self, conn: asyncpg.Connection, wake: asyncio.Event) -> None:
        producer: AIOKafkaProducer | None = None
        probe: AIOKafkaConsumer | None = None
        next_check = next_cleanup = next_progress_log = 0.0
        backoff = 0.5
        try:
            while True:
                if producer is None:
                    try:
                        producer, probe = await self._connect_broker()
                        backoff = 0.5
                        next_check = 0.0
                    except TopicsNotReady:
                        await asyncio.sleep(self.check_interval)
                        continue
                    except _BROKER_ERRORS as exc:
                        self.broker_ok = False
                        log.warning("broker unavailable (%s); events wait in the outbox", exc)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                now = time.monotonic()
                if now >= next_cleanup:
                    await self._cleanup(conn)
                    next_cleanup = now + 60.0
                wake.clear()
                try:
                    if self._settle_topics:
                        await self._wait_for_settled_topics(probe)
                    if now >= next_check:
                        next_check = now + self.check_interval
                        partitions = await asyncio.wait_for(topic_partitions(probe), 10)
                        self._check_topics(partitions)
                        if await self._broker_lost(probe, partitions):
                            await self._start_replay(conn)
                    replaying = self.replay is not None
                    rows = await self._next_rows(conn)
                    if not rows:
                        if replaying:
                            await self._finish_replay(conn)
                            continue
                        try:
                            await asyncio.wait_for(wake.wait(), timeout=self.check_interval)
                        except asyncio.TimeoutError:
                            pass
                        continue
                    # Check the log is still there right before sending: records sent into a
                    # broker that restarted empty would reach consumers ahead of the replay of
                    # older records of the same key. (The acks check below catches the rest.)
                    if await self._broker_lost(probe):
                        await self._start_replay(conn)
                        continue
                    acks = await asyncio.wait_for(self._publish(producer, rows), timeout=60.0)
                except TopicsNotReady:
                    self.broker_ok = False
                    await self._close_broker(producer, probe)
                    producer = probe = None
                    await asyncio.sleep(self.check_interval)
                    continue
                except _BROKER_ERRORS as exc:
                    self.broker_ok = False
                    log.warning("publishing failed (%s); will retry", exc)
                    await self._close_broker(producer, probe)
                    producer = probe = None
                    await asyncio.sleep(backoff)
                    continue
                self.broker_ok = True
                if acks_went_backwards(self._highs, acks):
                    # The rows just sent went into an emptied log: the replay covers them (their ids
                    # are below its end), so they are not marked here.
                    await self._start_replay(conn)
                    continue
                await self._mark_published(conn, rows, acks)
                if self.replay is not None and time.monotonic() >= next_progress_log:
                    next_progress_log = time.monotonic() + REPLAY_LOG_INTERVAL_S
                    await self._log_replay_progress(conn)
        finally:
            await self._close_broker(producer, probe)

    async def _next_rows(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        """The next rows to send: during a replay the retained rows after its position up to its end
        (published or not: all of them, in id order), else the unpublished rows in id order. Rows
        newer than a replay's end wait until it is done, so none overtakes an older one of its key."""
        if self.replay is not None:
            return await conn.fetch(
                "SELECT id, topic, key, payload, headers FROM outbox WHERE id > $1 AND id <= $2 "
                "ORDER BY id LIMIT $3",
                self.replay.position, self.replay.end, self.batch_size,
            )
        return await conn.fetch(
            "SELECT id, topic, key, payload, headers FROM outbox "
            "WHERE published_at IS NULL ORDER BY id LIMIT $1",
            self.batch_size,
        )

    def _check_topics(self, partitions: dict[str, set[int]]) -> None:
        """Raise TopicsNotReady (after logging what changed) unless every topic is as configured."""
        problems = topic_problems(self.topics, self.partitions, partitions)
        if problems != self.topic_problems:
            if problems:
                log.warning(
                    "topics not as configured; not publishing until they are: %s",
                    "; ".join(f"{t} {p}" for t, p in sorted(problems.items())),
                    extra={"fields": {"schema": self.schema, "topics": problems}},
                )
            else:
                log.info("topics as configured again; publishing", extra={"fields": {"schema": self.schema}})
        self.topic_problems = problems
        if problems:
            raise TopicsNotReady(problems)

    async def _wait_for_settled_topics(self, probe: AIOKafkaConsumer) -> None:
        """Return once every topic has been as configured for TOPIC_SETTLE_S (fresh metadata each
        time); raises TopicsNotReady (reconnect, wait) while one is missing or wrong."""
        settled_at = time.monotonic() + TOPIC_SETTLE_S
        while True:
            self._check_topics(await asyncio.wait_for(topic_partitions(probe), 10))
            if time.monotonic() >= settled_at:
                self._settle_topics = False
                return
            await asyncio.sleep(min(0.25, TOPIC_SETTLE_S))

    async def _connect_broker(self) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
        # The relay creates no topic: a missing one, or one with another partition count, is reported
        # and waited out (_check_topics), never written into. Topics are created by the launcher and
        # by the embedded broker's supervisor (or an operator): one creator, as several creating the
        # same topic at once after a broker restart can make the embedded broker replace a topic
        # that was just written into.
        producer = make_producer(self.bootstrap, f"{self.service}-relay")
        probe = make_probe_consumer(self.bootstrap, f"{self.service}-relay-probe")
        try:
            await asyncio.wait_for(producer.start(), 10)
            await asyncio.wait_for(probe.start(), 10)
            self._check_topics(await asyncio.wait_for(topic_partitions(probe), 10))
        except BaseException:
            await self._close_broker(producer, probe)
            raise
        self.broker_ok = True
        return producer, probe

    @staticmethod
    async def _close_broker(producer: AIOKafkaProducer | None, probe: AIOKafkaConsumer | None) -> None:
        for client in (producer, probe):
            if client is not None:
                try:
                    await asyncio.wait_for(client.stop(), 5)
                except Exception:  # noqa: BLE001 - a broken client may not stop cleanly
                    pass

    async def _publish(self, producer: AIOKafkaProducer, rows: list[asyncpg.Record]) -> list[tuple[str, int, int]]:
        """Send rows as record batches, one partition at a time in outbox-id order.

        Building batches ourselves (create_batch/send_batch) is several times faster than one
        send() per record: the Python side is the limit. The partition of a key is the default
        partitioner's (murmur2, as every Kafka client), so the key→partition map does not change.
        aiokafka keeps one request in flight per partition, so a key's records keep their order."""
        by_partition: dict[tuple[str, int], list[asyncpg.Record]] = {}
        partitions: dict[str, int] = {}
        for row in rows:
            topic = row["topic"]
            if topic not in partitions:
                partitions[topic] = len(await producer.partitions_for(topic))
                if partitions[topic] != self.partitions:  # changed since the last check
                    raise TopicsNotReady({topic: f"has {partitions[topic]} partitions, expected {self.partitions}"})
            key = row["key"]
            partition = partition_for(key.encode() if key is not None else None, partitions[topic])
            by_partition.setdefault((topic, partition), []).append(row)
        pending: list[tuple[str, int, int, asyncio.Future]] = []
        for (topic, partition), part_rows in by_partition.items():
            batch, count = producer.create_batch(), 0
            for row in part_rows:
                record = dict(key=row["key"].encode() if row["key"] is not None else None, value=row["payload"],
                              timestamp=None, headers=encode_headers(row["headers"]))
                if batch.append(**record) is None:
                    pending.append((topic, partition, count, await producer.send_batch(batch, topic, partition=partition)))
                    batch, count = producer.create_batch(), 0
                    if batch.append(**record) is None:
                        raise ValueError(f"outbox record {row['id']} does not fit in a record batch")
                count += 1
            if count:
                pending.append((topic, partition, count, await producer.send_batch(batch, topic, partition=partition)))
        metas = await asyncio.gather(*(future for *_, future in pending))
        acks: list[tuple[str, int, int]] = []
        for (topic, partition, count, _), meta in zip(pending, metas):
            acks.extend((topic, partition, meta.offset + i) for i in range(count))
        return acks

    async def _mark_published(self, conn: asyncpg.Connection, rows: list[asyncpg.Record],
                              acks: list[tuple[str, int, int]]) -> None:
        ranges = ack_ranges(acks)
        ids = [r["id"] for r in rows]
        async with conn.transaction():
            if self.replay is None:
                await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", ids)
            else:
                # Most replayed rows were published before; only those that were not are touched
                # (found through the partial index of unpublished rows), and the position moves on.
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE published_at IS NULL AND id > $1 AND id <= $2",
                    self.replay.position, ids[-1],
                )
                advanced = replay_advanced(self.replay, ids)
                await conn.execute("UPDATE relay_progress SET replay_position = $1", advanced.position)
            await conn.executemany(
                "INSERT INTO relay_state (topic, partition, high_offset, floor_offset) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (topic, partition) DO UPDATE SET "
                "high_offset = GREATEST(relay_state.high_offset, EXCLUDED.high_offset), "
                "floor_offset = EXCLUDED.floor_offset",
                [(t, p, high, low) for (t, p), (low, high) in ranges.items()],
            )
        for tp, (low, high) in ranges.items():
            self._highs[tp] = max(self._highs.get(tp, -1), high)
            self._floors[tp] = low
        if self.replay is not None:
            self.replay = replay_advanced(self.replay, ids)
            self.replayed_total += len(ids)
        self.published_total += len(ids)
        OUTBOX_PUBLISHED.labels(self.service).inc(len(ids))

    async def _broker_lost(self, probe: AIOKafkaConsumer | None,
                           partitions: dict[str, set[int]] | None = None) -> bool:
        """Compare the broker's end offsets with what it acknowledged to us before. Without fresh
        metadata (`partitions`) this is one ListOffsets round trip, cheap enough before every batch;
        a missing topic then shows as a timeout, handled as a broker error (reconnect, recheck)."""
        if probe is None or not self._floors:
            return False
        ends: dict[tuple[str, int], int | None] = {}
        wanted: list[TopicPartition] = []
        if partitions is not None:
            for topic, partition in self._floors:
                if partition not in partitions.get(topic, ()):
                    ends[(topic, partition)] = None
                else:
                    wanted.append(TopicPartition(topic, partition))
        else:
            wanted = [TopicPartition(t, p) for t, p in self._floors]
        if wanted:
            offsets = await asyncio.wait_for(probe.end_offsets(wanted), 10)
            ends.update({(tp.topic, tp.partition): off for tp, off in offsets.items()})
        return end_offsets_went_backwards(self._floors, ends)

    async def _load_progress(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow("SELECT replay_start, replay_position, replay_end, losses FROM relay_progress")
        if row is None:
            await conn.execute("INSERT INTO relay_progress (losses) VALUES (0) ON CONFLICT DO NOTHING")
            self.losses, self.replay = 0, None
            return
        self.losses = row["losses"]
        self.replay = (Replay(row["replay_start"], row["replay_position"], row["replay_end"], row["losses"])
                       if row["replay_end"] is not None else None)
        if self.replay is not None:
            log.warning("resuming the replay of the retained outbox",
                        extra={"fields": {"schema": self.schema, **replay_progress(self.replay, await self._to_go(conn))}})

    async def _start_replay(self, conn: asyncpg.Connection) -> None:
        """The broker lost its log: send every retained row again, in id order, before anything
        newer; the consumers' inboxes drop what they had already applied. Logged once per loss."""
        bounds = await conn.fetchrow("SELECT min(id) AS first, max(id) AS last FROM outbox")
        replay = replay_after_loss(self.replay, bounds["first"], bounds["last"], self.losses)
        async with conn.transaction():
            await conn.execute("DELETE FROM relay_state")
            await conn.execute(
                "UPDATE relay_progress SET replay_start = $1, replay_position = $2, replay_end = $3, losses = losses + 1, "
                "replay_started_at = now()",
                *((replay.start, replay.position, replay.end) if replay else (None, None, None)),
            )
        during = self.replay is not None
        self._highs.clear()
        self._floors.clear()
        self.losses += 1
        self.replay = replay
        self.replays += 1
        self.replayed_total = 0
        self._settle_topics = True
        OUTBOX_REPLAYS.labels(self.service).inc()
        events = await self._to_go(conn) if replay else 0
        log.warning(
            "broker lost its log; replaying the retained outbox",
            extra={"fields": {"schema": self.schema, "events": events, "loss": self.losses,
                              "during_replay": during}},
        )
        if replay is None:
            await self._finish_replay(conn)

    async def _finish_replay(self, conn: asyncpg.Connection) -> None:
        await conn.execute("UPDATE relay_progress SET replay_start = NULL, replay_position = NULL, replay_end = NULL")
        if self.replay is not None:
            log.warning("replay of the retained outbox finished; publishing new events",
                        extra={"fields": {"schema": self.schema, "replayed_up_to": self.replay.position,
                                          "loss": self.replay.losses}})
        self.replay = None

    async def _to_go(self, conn: asyncpg.Connection) -> int:
        if self.replay is None:
            return 0
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE id > $1 AND id <= $2",
                                   self.replay.position, self.replay.end)

    async def _log_replay_progress(self, conn: asyncpg.Connection) -> None:
        assert self.replay is not None
        log.info("replaying the retained outbox: %d replayed, %d to go", self.replayed_total, to_go := await self._to_go(conn),
                 extra={"fields": {"schema": self.schema, **replay_progress(self.replay, to_go)}})

    async def _cleanup(self, conn: asyncpg.Connection) -> None:
        """Drop published rows past their topic's outbox retention (device telemetry hours, resident
        state OUTBOX_RETENTION_DAYS: see shared/messaging/topics.py); unpublished rows always stay.
        Each DELETE reads only the rows it drops (index on topic, published_at)."""
        for topic in self.topics:
            hours = min(self.topic_retention_hours.get(topic, outbox_retention_hours(topic, self.retention_hours)),
                        self.retention_hours)
            if hours < self.retention_hours:
                await conn.execute(
                    "DELETE FROM outbox WHERE topic = $1 AND published_at < now() - make_interval(secs => $2)",
                    topic, float(hours * 3600),
                )
        await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            float(self.retention_hours * 3600),
        )
        pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        OUTBOX_PENDING.labels(self.service).set(pending)
