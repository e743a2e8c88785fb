"""The consumer's opt-in pipelining (parse the next batch while one is being applied), its one-pass
parser hook and its inbox-exempt types, against a real PostgreSQL and a real broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.db import Database
from shared.events import CloudEvent, parse_data
from shared.messaging.consumer import EventConsumer
from shared.messaging.kafka import ensure_topics
from tests.integration.support import COUNTS_DDL, committed_to, create_schema, eventually
from tests.integration.test_backbone_delivery import TRAINING, count_handler, running, training_event


def one_pass(raw: bytes):
    event = CloudEvent.from_json(raw)
    return event, parse_data(event)


async def _counts(db: Database) -> dict:
    async with db.pool.acquire() as conn:
        return {r["key"]: (r["n"], r["last_seq"]) for r in await conn.fetch("SELECT * FROM counts")}


async def test_a_pipelined_consumer_applies_each_event_once_in_key_order_and_commits_every_offset(
        database_url, bootstrap, unique):
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    await ensure_topics(bootstrap, [topic, topic + ".dlq"], 4)
    db = Database(database_url, schema, pool_size=4)
    await db.start()
    group = f"pipe-{unique}"
    # Small batches, so many are in flight one behind the other.
    consumer = EventConsumer(name=group, topics=[topic], handlers={TRAINING: count_handler}, pool=db.pool,
                             bootstrap=bootstrap, schema=schema, batch_size=50, pipeline=True, fast_parse=one_pass)
    events = [training_event(f"k{i % 20}", i) for i in range(1000)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = [await producer.send(topic, e.to_json(), key=e.subject.encode())
                for e in events + events[:100]]  # the first hundred twice: redelivered
        ends: dict[int, int] = {}
        for meta in await asyncio.gather(*sent):
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        async with running(consumer):
            await eventually(lambda: _applied(consumer, 1000), timeout=90, message="all applied")
            await eventually(lambda: committed_to(bootstrap, group, topic, ends), timeout=30,
                             message="offsets committed to the end")
        counts = await _counts(db)
    finally:
        await producer.stop()
        await db.close()
    assert counts == {f"k{k}": (50, 980 + k) for k in range(20)}  # the last record per key wins
    assert consumer.duplicates_total == 100


async def _applied(consumer: EventConsumer, n: int) -> bool:
    return consumer.applied_total >= n


def _record(topic: str, offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value), [])


async def test_a_batch_fetched_before_a_rewind_is_dropped_not_applied_after_it(database_url, bootstrap, unique):
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    db = Database(database_url, schema, pool_size=2)
    await db.start()
    consumer = EventConsumer(name=f"rw-{unique}", topics=[topic], handlers={TRAINING: count_handler},
                             pool=db.pool, bootstrap=bootstrap, schema=schema)
    batch = {TopicPartition(topic, 0): [_record(topic, 0, training_event("early", 1).to_json())]}
    try:
        stale = await consumer._prepare(batch)
        async with consumer.lock:
            await consumer.rewind()  # what a rebuild does, between the fetch and the apply
        assert await consumer._apply_prepared(stale) is False
        assert await _counts(db) == {}
        await consumer.apply_batch(batch)  # fetched again after the rewind: applied
        assert await _counts(db) == {"early": (1, 1)}
    finally:
        await db.close()


async def test_inbox_exempt_types_get_no_inbox_row_and_the_others_do(database_url, bootstrap, unique):
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    db = Database(database_url, schema, pool_size=2)
    await db.start()
    exempt = EventConsumer(name=f"ex-{unique}", topics=[topic], handlers={TRAINING: count_handler}, pool=db.pool,
                           bootstrap=bootstrap, schema=schema, inbox_exempt_types={TRAINING})
    tracked = EventConsumer(name=f"tr-{unique}", topics=[topic], handlers={TRAINING: count_handler}, pool=db.pool,
                            bootstrap=bootstrap, schema=schema)
    batch = {TopicPartition(topic, 0): [_record(topic, 0, training_event("x", 1).to_json())]}
    try:
        for consumer in (exempt, exempt, tracked, tracked):
            await consumer.apply_batch(batch)
        async with db.pool.acquire() as conn:
            inbox = await conn.fetch("SELECT consumer FROM inbox")
        # The exempt consumer applied both deliveries (its handler must be idempotent itself).
        assert await _counts(db) == {"x": (3, 1)}
        assert [r["consumer"] for r in inbox] == [f"tr-{unique}"]
    finally:
        await db.close()



async def test_bisecting_a_failed_batch_dead_letters_only_the_bad_events_and_keeps_the_rest(
        database_url, bootstrap, unique):
    from shared.messaging.consumer import Unprocessable

    async def refuse_odd(conn, event, data):
        if data.trainees % 2:
            raise Unprocessable(f"odd {data.trainees}")
        await count_handler(conn, event, data)

    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    db = Database(database_url, schema, pool_size=2)
    await db.start()
    consumer = EventConsumer(name=f"bi-{unique}", topics=[topic], handlers={TRAINING: refuse_odd}, pool=db.pool,
                             bootstrap=bootstrap, schema=schema, bisect_failures=True)
    values = [training_event("k", 2 * i) for i in range(40)] + [training_event("k", 81), training_event("k", 83)]
    batch = {TopicPartition(topic, 0): [_record(topic, i, e.to_json()) for i, e in enumerate(values)]}
    try:
        await consumer.apply_batch(batch)
        async with db.pool.acquire() as conn:
            reasons = [r["headers"]["dlq-reason"] for r in await conn.fetch("SELECT headers FROM outbox")]
        assert await _counts(db) == {"k": (40, 78)}
        assert sorted(reasons) == ["Unprocessable: odd 81", "Unprocessable: odd 83"]
    finally:
        await db.close()


async def test_a_database_crash_inside_a_handler_retries_the_batch_and_dead_letters_nothing(
        database_url, bootstrap, unique):
    """PostgreSQL's "terminating connection because of crash of another server process" (57P02) or a
    statement timeout says nothing about the event: the batch is retried, never dead-lettered."""
    import asyncpg
    import pytest

    crashes = [asyncpg.exceptions.CrashShutdownError("terminating connection because of crash"),
               asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout")]

    async def crash_first(conn, event, data):
        if crashes:
            raise crashes.pop(0)
        await count_handler(conn, event, data)

    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    db = Database(database_url, schema, pool_size=2)
    await db.start()
    consumer = EventConsumer(name=f"cr-{unique}", topics=[topic], handlers={TRAINING: crash_first}, pool=db.pool,
                             bootstrap=bootstrap, schema=schema)
    batch = {TopicPartition(topic, 0): [_record(topic, 0, training_event("c", 1).to_json())]}
    try:
        for _ in range(2):
            with pytest.raises((asyncpg.exceptions.CrashShutdownError, asyncpg.exceptions.QueryCanceledError)):
                await consumer.apply_batch(batch)
        await consumer.apply_batch(batch)
        async with db.pool.acquire() as conn:
            dead = await conn.fetchval("SELECT count(*) FROM outbox")
        assert dead == 0
        assert await _counts(db) == {"c": (1, 1)}
    finally:
        await db.close()
