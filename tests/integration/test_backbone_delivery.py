"""The outbox, relay and idempotent consumer against a real PostgreSQL and a real broker."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from eldercare.infra import BrokerSupervisor
from shared.db import Database, connect
from shared.events import make_event
from shared.messaging.consumer import EventConsumer
from shared.messaging.kafka import ensure_topics
from shared.messaging.outbox import add_rows, outbox_row
from shared.messaging.relay import OutboxRelay
from tests.integration.support import COUNTS_DDL, create_schema, eventually, read_topic

TRAINING = "eldercare.county.training.recorded.v1"


def training_event(key: str, seq: int, county: str = "410928"):
    """A real contract (training recorded) used as a carrier: course = key, trainees = seq."""
    return make_event(TRAINING, "test", {"course": key, "trainees": seq}, subject=key, countycode=county)


async def write_events(url: str, schema: str, topic: str, events, *, rollback: bool = False) -> None:
    conn = await connect(url, schema)
    try:
        tx = conn.transaction()
        await tx.start()
        await add_rows(conn, [outbox_row(e, topic=topic) for e in events], schema)
        if rollback:
            await tx.rollback()
        else:
            await tx.commit()
    finally:
        await conn.close()


def make_relay(url: str, schema: str, bootstrap: str, topic: str, **kw) -> OutboxRelay:
    return OutboxRelay(service=schema, database_url=url, schema=schema, bootstrap=bootstrap,
                       partitions=4, topics=[topic, topic + ".dlq"], check_interval=0.5, **kw)


async def count_handler(conn: asyncpg.Connection, event, data) -> None:
    await conn.execute(
        "INSERT INTO counts (key, n, last_seq) VALUES ($1, 1, $2) "
        "ON CONFLICT (key) DO UPDATE SET n = counts.n + 1, last_seq = EXCLUDED.last_seq",
        data.course, data.trainees,
    )


@contextlib.asynccontextmanager
async def running(*workers):
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_committed_write_yields_exactly_one_event_and_rolled_back_write_none(database_url, bootstrap, unique):
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema)
    kept, dropped = training_event("k1", 1), training_event("k2", 2)
    await write_events(database_url, schema, topic, [kept])
    await write_events(database_url, schema, topic, [dropped], rollback=True)
    await ensure_topics(bootstrap, [topic, topic + ".dlq"], 4)

    async with running(make_relay(database_url, schema, bootstrap, topic)):
        records = await read_topic(bootstrap, topic, expect=1, timeout=30)

    ids = [orjson.loads(r.value)["id"] for r in records]
    assert ids == [kept.id]
    assert records[0].key == b"k1"
    assert dict(records[0].headers)["content-type"] == b"application/cloudevents+json"


async def test_writes_succeed_while_broker_is_down_and_all_arrive_in_key_order_after(database_url, private_broker, unique):
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema)
    relay = make_relay(database_url, schema, private_broker.bootstrap, topic)
    supervisor = BrokerSupervisor(private_broker, [topic, topic + ".dlq"], 4)
    await asyncio.to_thread(supervisor.check)  # creates the topics, as the launcher does
    keys = [f"resident-{i}" for i in range(10)]
    async with running(relay):
        await write_events(database_url, schema, topic, [training_event(k, 0) for k in keys])
        await eventually(lambda: _published(relay, 10), timeout=30, message="first events published")

        private_broker.kill()
        for seq in range(1, 21):  # every write is a committed database transaction: none fails
            await write_events(database_url, schema, topic, [training_event(k, seq) for k in keys])
        await asyncio.sleep(1.0)
        assert await asyncio.to_thread(supervisor.check) == "restarted"  # back, and empty: the relay must notice and replay

        records = await read_topic(private_broker.bootstrap, topic, expect=210, timeout=60)

    seen: dict[str, list[int]] = {k: [] for k in keys}
    first_seen = set()
    for r in records:
        event = orjson.loads(r.value)
        if event["id"] in first_seen:
            continue
        first_seen.add(event["id"])
        seen[event["subject"]].append(event["data"]["trainees"])
    assert len(first_seen) == 210
    for key in keys:
        assert seen[key] == list(range(21)), f"{key} out of order: {seen[key]}"
    assert relay.replays >= 1


async def _published(relay: OutboxRelay, n: int) -> bool:
    return relay.published_total >= n


async def test_broker_restarting_empty_leaves_projection_unchanged(database_url, private_broker, unique):
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    db = Database(database_url, schema, pool_size=4)
    await db.start()
    relay = make_relay(database_url, schema, private_broker.bootstrap, topic)
    supervisor = BrokerSupervisor(private_broker, [topic, topic + ".dlq"], 4)
    await asyncio.to_thread(supervisor.check)
    consumer = EventConsumer(name=f"proj-{unique}", topics=[topic], handlers={TRAINING: count_handler},
                             pool=db.pool, bootstrap=private_broker.bootstrap, schema=schema)
    events = [training_event(f"r{i % 25}", i) for i in range(300)]
    try:
        async with running(relay, consumer):
            await write_events(database_url, schema, topic, events)
            await eventually(lambda: _total(db, 300), timeout=60, message="projection built")
            before = await _snapshot(db)

            private_broker.kill()
            assert await asyncio.to_thread(supervisor.check) == "restarted"
            await eventually(lambda: _flag(relay.replays >= 1), timeout=30, message="relay replayed")
            await eventually(lambda: _flag(consumer.duplicates_total >= 300), timeout=90,
                             message="consumer saw the replayed events")
            after = await _snapshot(db)
    finally:
        await db.close()
    assert after == before
    assert sum(n for n, _ in after.values()) == 300


async def _flag(value: bool) -> bool:
    return value


async def _total(db: Database, n: int) -> bool:
    async with db.pool.acquire() as conn:
        return (await conn.fetchval("SELECT coalesce(sum(n), 0) FROM counts")) >= n


async def _snapshot(db: Database) -> dict:
    async with db.pool.acquire() as conn:
        return {r["key"]: (r["n"], r["last_seq"]) for r in await conn.fetch("SELECT * FROM counts")}


async def test_duplicate_record_has_one_effect_and_bad_records_go_to_dlq_with_reason(database_url, bootstrap, unique):
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    db = Database(database_url, schema, pool_size=4)
    await db.start()
    relay = make_relay(database_url, schema, bootstrap, topic)  # publishes the dead letters
    consumer = EventConsumer(name=f"c-{unique}", topics=[topic], handlers={TRAINING: count_handler},
                             pool=db.pool, bootstrap=bootstrap, schema=schema)
    good = training_event("dup", 1)
    invalid = training_event("bad", -5)  # trainees must be >= 0
    after = training_event("after", 2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await ensure_topics(bootstrap, [topic, topic + ".dlq"], 4)
        for value, key in ((good.to_json(), b"dup"), (good.to_json(), b"dup"), (b"{not json", b"x"),
                           (invalid.to_json(), b"bad"), (after.to_json(), b"after")):
            await producer.send_and_wait(topic, value=value, key=key)
        async with running(relay, consumer):
            await eventually(lambda: _has(db, "after"), timeout=60, message="consumer carried on")
            dead = await read_topic(bootstrap, topic + ".dlq", expect=2, timeout=30)
        async with db.pool.acquire() as conn:
            counts = {r["key"]: r["n"] for r in await conn.fetch("SELECT key, n FROM counts")}
    finally:
        await producer.stop()
        await db.close()
    assert counts == {"dup": 1, "after": 1}
    reasons = sorted(dict(r.headers)["dlq-reason"].decode() for r in dead)
    assert len(reasons) == 2
    assert reasons[0].startswith("invalid event: trainees") or "trainees" in reasons[1]
    assert any(r.startswith("not JSON") for r in reasons)
    assert {dict(r.headers)["dlq-source-topic"].decode() for r in dead} == {topic}
    assert any(r.value == b"{not json" for r in dead)


async def _has(db: Database, key: str) -> bool:
    async with db.pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT 1 FROM counts WHERE key = $1", key))
