"""The embedded broker dies, restarts empty or comes back with the wrong topics under a running relay
and consumers: the supervisor brings it back as configured, the relay replays its retained outbox
once per loss and finishes, the consumers rejoin, and the projection ends equal to the source."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI

from eldercare.infra import BrokerSupervisor
from shared.db import Database
from shared.messaging.consumer import EventConsumer
from shared.messaging.kafka import check_topics, ensure_topics
from shared.messaging.relay import OutboxRelay
from shared.service import ServiceRuntime, health_router
from shared.settings import PlatformSettings
from tests.integration.support import COUNTS_DDL, create_schema, eventually, read_topic
from tests.integration.test_backbone_delivery import TRAINING, count_handler, training_event, write_events

PARTITIONS = 3  # not Tansu's auto-creation count (4), so a topic it auto-creates is told apart
LOST = "broker lost its log; replaying the retained outbox"


def relay_for(url: str, schema: str, bootstrap: str, topic: str, **kw) -> OutboxRelay:
    return OutboxRelay(service=schema, database_url=url, schema=schema, bootstrap=bootstrap,
                       partitions=PARTITIONS, topics=[topic, topic + ".dlq"], check_interval=0.5, **kw)


@contextlib.asynccontextmanager
async def running(*workers):
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def losses_logged(caplog, schema: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == LOST and getattr(r, "fields", {}).get("schema") == schema]


class Writer:
    """County traffic: batches of events for 25 keys, each key's sequence numbers growing."""

    def __init__(self, url: str, schema: str, topic: str) -> None:
        self.url, self.schema, self.topic = url, schema, topic
        self.written: dict[str, int] = {}  # key -> events written (its last sequence number)

    async def run(self, batches: int, pause: float = 0.05) -> None:
        for b in range(batches):
            events = []
            for i in range(b * 10, b * 10 + 10):
                key = f"r{i % 25}"
                self.written[key] = self.written.get(key, 0) + 1
                events.append(training_event(key, self.written[key]))
            await write_events(self.url, self.schema, self.topic, events)
            await asyncio.sleep(pause)

    @property
    def expected(self) -> dict[str, tuple[int, int]]:
        return {k: (n, n) for k, n in self.written.items()}


async def projection(db: Database) -> dict[str, tuple[int, int]]:
    async with db.pool.acquire() as conn:
        return {r["key"]: (r["n"], r["last_seq"]) for r in await conn.fetch("SELECT key, n, last_seq FROM counts")}


async def test_broker_killed_mid_traffic_is_restarted_replayed_once_and_projection_ends_equal(
        database_url, private_broker, unique, caplog):
    caplog.set_level(logging.INFO)
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    supervisor = BrokerSupervisor(private_broker, [topic, topic + ".dlq"], PARTITIONS, say=logging.getLogger("sup").warning)
    await asyncio.to_thread(supervisor.check)  # creates the topics, as the launcher does
    db = Database(database_url, schema, pool_size=4)
    await db.start()
    relay = relay_for(database_url, schema, private_broker.bootstrap, topic)
    # Two members of one group: both must rejoin once the broker forgot the group and its offsets.
    members = [EventConsumer(name=f"proj-{unique}", topics=[topic], handlers={TRAINING: count_handler},
                             pool=db.pool, bootstrap=private_broker.bootstrap, schema=schema, batch_size=100)
               for _ in range(2)]
    writer = Writer(database_url, schema, topic)
    supervisor.start()
    try:
        async with running(relay, *members):
            traffic = asyncio.create_task(writer.run(batches=200))
            await eventually(lambda: _applied(members, 200), timeout=60, message="projection started")
            private_broker.kill()  # mid-traffic; the supervisor starts it again, empty
            await eventually(lambda: _flag(supervisor.restarts == 1), timeout=20, message="supervisor restarted it")
            returned, written = time.monotonic(), dict(writer.written)
            await eventually(lambda: _caught_up(db, written), timeout=90, message="caught up after the return")
            recovered = time.monotonic() - returned
            await traffic
            await eventually(lambda: _equal(db, writer), timeout=90, message="projection equal to the source")
            assert all(m.connected for m in members)
        final = await projection(db)
        # (before the supervisor stops: a broker it started goes with its thread, see BrokerSupervisor)
        assert await check_topics(private_broker.bootstrap, [topic, topic + ".dlq"], PARTITIONS) == {}
    finally:
        supervisor.stop()
        await db.close()
    assert final == writer.expected  # nothing lost, nothing applied twice, each key's last event last
    assert sum(n for n, _ in final.values()) == 2000
    assert relay.replays == 1 and len(losses_logged(caplog, schema)) == 1
    assert sum(m.duplicates_total for m in members) > 0  # the replay did come through the inbox
    print(f"broker return -> projection equal: {recovered:.1f}s")


async def test_topic_back_with_wrong_partition_count_is_reported_not_written_into_then_recreated(
        database_url, private_broker, unique, caplog):
    caplog.set_level(logging.INFO)
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema)
    # As a client that lets the broker auto-create it would leave it: Tansu's 4 partitions, not 3.
    admin = AIOKafkaAdminClient(bootstrap_servers=private_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1), NewTopic(topic + ".dlq", PARTITIONS, 1)])
    finally:
        await admin.close()
    relay = relay_for(database_url, schema, private_broker.bootstrap, topic)
    db = Database(database_url, schema, pool_size=2)
    await db.start()
    app = FastAPI()
    app.include_router(health_router("t"))
    settings = PlatformSettings(database_url=database_url, kafka_bootstrap_servers=private_broker.bootstrap)
    app.state.runtime = ServiceRuntime(name="t", settings=settings, db=db, relay=relay)
    try:
        async with running(relay):
            await write_events(database_url, schema, topic, [training_event(f"k{i}", i) for i in range(50)])
            await eventually(lambda: _flag(bool(relay.topic_problems)), timeout=20, message="problem reported")
            await asyncio.sleep(2.0)  # several publish rounds' worth
            assert relay.topic_problems == {topic: f"has 4 partitions, expected {PARTITIONS}"}
            assert relay.published_total == 0
            assert await read_topic(private_broker.bootstrap, topic, idle=1.0, timeout=10) == []
            assert any("not publishing until they are" in r.getMessage() and topic in r.getMessage()
                       for r in caplog.records)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                ready = (await client.get("/readyz")).json()
            assert ready["checks"]["topics"] == f"{topic} has 4 partitions, expected {PARTITIONS}"
            assert ready["status"] == "not ready"

            # The supervisor of the embedded broker recreates it as configured; the relay then publishes.
            supervisor = BrokerSupervisor(private_broker, [topic, topic + ".dlq"], PARTITIONS)
            assert await asyncio.to_thread(supervisor.check) == "topics"
            records = await read_topic(private_broker.bootstrap, topic, expect=50, timeout=30)
            assert relay.topic_problems == {}
    finally:
        await db.close()
    assert len({orjson.loads(r.value)["id"] for r in records}) == 50
    assert {r.partition for r in records} <= set(range(PARTITIONS))


async def test_supervisor_restarts_an_exited_broker_and_rolls_one_over_its_memory_budget(private_broker, unique):
    topics = [f"sup.{unique}.a", f"sup.{unique}.a.dlq"]
    said: list[str] = []
    supervisor = BrokerSupervisor(private_broker, topics, PARTITIONS, say=said.append)
    assert await asyncio.to_thread(supervisor.check) == "topics"
    first_pid = private_broker.process.pid

    private_broker.kill()
    assert await asyncio.to_thread(supervisor.check) == "restarted"
    assert private_broker.process.pid != first_pid
    assert await check_topics(private_broker.bootstrap, topics, PARTITIONS) == {}
    assert any("exited" in m for m in said) and any("listening again" in m for m in said)

    # A budget the broker is over at once, no minimum interval: the next check rolls it.
    supervisor.memory_budget_bytes, supervisor.min_roll_interval_s = 1, 0.0
    pid = private_broker.process.pid
    assert await asyncio.to_thread(supervisor.check) == "rolled"
    assert private_broker.process.pid != pid and supervisor.rolls == 1 and supervisor.last_rss > 1
    assert await check_topics(private_broker.bootstrap, topics, PARTITIONS) == {}
    assert any("over its budget" in m and "rolling it" in m for m in said)

    # Within the minimum interval it only says so (a budget the replays alone exceed cannot be kept).
    supervisor.min_roll_interval_s = 3600.0
    supervisor._next_memory = 0.0
    assert await asyncio.to_thread(supervisor.check) is None
    assert supervisor.rolls == 1


async def test_replay_resumes_where_it_stopped_after_a_relay_restart(database_url, private_broker, unique, caplog):
    caplog.set_level(logging.INFO)
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema)
    await ensure_topics(private_broker.bootstrap, [topic, topic + ".dlq"], PARTITIONS)
    n, batch = 6000, 100
    await write_events(database_url, schema, topic, [training_event(f"k{i % 40}", i) for i in range(n)])
    first = relay_for(database_url, schema, private_broker.bootstrap, topic, batch_size=batch)
    async with running(first):
        await eventually(lambda: _flag(first.published_total >= n), timeout=60, message="published")
        private_broker.kill()
        await asyncio.to_thread(BrokerSupervisor(private_broker, [topic, topic + ".dlq"], PARTITIONS).check)
        await eventually(lambda: _flag(first.replay is not None and first.replay.position >= n // 3), timeout=60,
                         message="replay under way")
    stopped_at = first.replay.position  # the relay stopped (a leader change, a restart) mid-replay
    assert stopped_at < n

    second = relay_for(database_url, schema, private_broker.bootstrap, topic, batch_size=batch)
    async with running(second):
        await eventually(lambda: _flag(second.replay is None and second.losses == 1 and second.replayed_total > 0),
                         timeout=60, message="replay finished by the new relay")
    records = await read_topic(private_broker.bootstrap, topic, idle=1.5, timeout=30)
    ids = [orjson.loads(r.value)["id"] for r in records]
    assert len(set(ids)) == n  # the whole retained outbox is in the new log
    # The second relay went on from where the first stopped: at most one unacknowledged round again.
    assert len(ids) <= n + 2 * batch
    assert second.replayed_total <= n - stopped_at + 2 * batch
    assert len(losses_logged(caplog, schema)) == 1
    assert any(r.getMessage() == "resuming the replay of the retained outbox" for r in caplog.records)


async def test_a_second_loss_mid_replay_is_logged_once_more_and_the_replay_still_finishes(
        database_url, private_broker, unique, caplog):
    caplog.set_level(logging.INFO)
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    supervisor = BrokerSupervisor(private_broker, [topic, topic + ".dlq"], PARTITIONS)
    await asyncio.to_thread(supervisor.check)
    db = Database(database_url, schema, pool_size=4)
    await db.start()
    n = 6000
    await write_events(database_url, schema, topic, [training_event(f"k{i % 40}", i + 1) for i in range(n)])
    relay = relay_for(database_url, schema, private_broker.bootstrap, topic, batch_size=100)
    consumer = EventConsumer(name=f"c-{unique}", topics=[topic], handlers={TRAINING: count_handler},
                             pool=db.pool, bootstrap=private_broker.bootstrap, schema=schema)
    try:
        async with running(relay, consumer):
            await eventually(lambda: _applied([consumer], n), timeout=90, message="projection built")
            private_broker.kill()
            assert await asyncio.to_thread(supervisor.check) == "restarted"
            await eventually(lambda: _flag(relay.replay is not None and relay.replay.position >= n // 3),
                             timeout=60, message="replay under way")
            private_broker.kill()  # again, mid-replay
            assert await asyncio.to_thread(supervisor.check) == "restarted"
            later = [training_event(f"k{i % 40}", n + i + 1) for i in range(200)]
            await write_events(database_url, schema, topic, later)
            await eventually(lambda: _flag(relay.replay is None and relay.replays == 2), timeout=90,
                             message="second replay finished")
            await eventually(lambda: _applied([consumer], n + 200), timeout=90, message="new events applied")
            final = await projection(db)
    finally:
        await db.close()
    lost = losses_logged(caplog, schema)
    assert len(lost) == 2 and lost[1].fields["during_replay"] is True
    assert sum(c for c, _ in final.values()) == n + 200  # nothing lost, nothing twice
    assert all(last == n + 160 + int(k[1:]) + 1 for k, (_, last) in final.items())  # each key's last event last
    records = await read_topic(private_broker.bootstrap, topic, idle=1.5, timeout=30)
    assert len({orjson.loads(r.value)["id"] for r in records}) == n + 200  # the new log holds everything again


async def _applied(consumers, n: int) -> bool:
    return sum(c.applied_total for c in consumers) >= n


async def _flag(value: bool) -> bool:
    return value


async def _caught_up(db: Database, written: dict[str, int]) -> bool:
    current = await projection(db)
    return all(current.get(k, (0, 0))[0] >= n for k, n in written.items())


async def _equal(db: Database, writer: Writer) -> bool:
    return await projection(db) == writer.expected


async def test_broker_restarted_by_hand_gets_no_topic_auto_created_and_nothing_is_sent_until_recreated(
        database_url, private_broker, unique, caplog):
    # The case: the broker started again with its own command line (no topics) while a
    # consumer and the relay keep asking for theirs. Before the fix the consumer's metadata request
    # auto-created the topic with Tansu's 4 partitions and the relay wrote into it.
    caplog.set_level(logging.INFO)
    schema, topic = f"t_{unique}", f"test.{unique}.v1"
    await create_schema(database_url, schema, [COUNTS_DDL])
    supervisor = BrokerSupervisor(private_broker, [topic, topic + ".dlq"], PARTITIONS, topic_check_s=0.0)
    await asyncio.to_thread(supervisor.check)
    db = Database(database_url, schema, pool_size=4)
    await db.start()
    relay = relay_for(database_url, schema, private_broker.bootstrap, topic)
    consumer = EventConsumer(name=f"c-{unique}", topics=[topic], handlers={TRAINING: count_handler},
                             pool=db.pool, bootstrap=private_broker.bootstrap, schema=schema)
    writer = Writer(database_url, schema, topic)
    try:
        async with running(relay, consumer):
            traffic = asyncio.create_task(writer.run(batches=60))
            await eventually(lambda: _applied([consumer], 100), timeout=60, message="projection started")
            private_broker.kill()
            private_broker.start()  # by hand: empty, no topics
            await traffic
            await eventually(lambda: _flag("missing" in relay.topic_problems.get(topic, "")), timeout=20,
                             message="missing topic reported")
            await asyncio.sleep(3.0)  # the consumer keeps asking for its topic meanwhile
            assert await check_topics(private_broker.bootstrap, [topic], PARTITIONS) == {topic: "missing"}
            assert await asyncio.to_thread(supervisor.check) == "topics"  # the supervisor's periodic check
            await eventually(lambda: _equal(db, writer), timeout=90, message="projection equal to the source")
            records = await read_topic(private_broker.bootstrap, topic, expect=600, timeout=30)
    finally:
        await db.close()
    assert {r.partition for r in records} <= set(range(PARTITIONS))
    assert len({orjson.loads(r.value)["id"] for r in records}) == 600
    assert relay.replays == 1 and len(losses_logged(caplog, schema)) == 1


async def test_each_kill_under_a_busy_relay_of_several_topics_is_one_loss_logged_once(
        database_url, private_broker, unique, caplog):
    # As in `make up`: several topics of 8 partitions, a backlog being published when the broker
    # dies, the supervisor recreating the topics while the relay notices the loss. Records written
    # while the topics were being created vanished, and the relay logged a second loss for one kill.
    caplog.set_level(logging.INFO)
    schema = f"t_{unique}"
    topics = [f"test.{unique}.{name}.v1" for name in ("a", "b", "c")]
    every_topic = topics + [t + ".dlq" for t in topics]
    await create_schema(database_url, schema, [COUNTS_DDL])
    supervisor = BrokerSupervisor(private_broker, every_topic, 8, say=logging.getLogger("sup").warning)
    await asyncio.to_thread(supervisor.check)
    relay = OutboxRelay(service=schema, database_url=database_url, schema=schema,
                        bootstrap=private_broker.bootstrap, partitions=8, topics=every_topic)
    kills = 3
    supervisor.start()
    try:
        async with running(relay):
            for kill in range(1, kills + 1):
                published = relay.published_total
                for topic in topics:
                    await write_events(database_url, schema, topic,
                                       [training_event(f"k{i % 300}", kill * 10_000 + i) for i in range(4000)])
                await eventually(lambda: _flag(relay.published_total > published + 3000), timeout=60,
                                 message="backlog being published")
                private_broker.kill()
                await eventually(lambda: _flag(supervisor.restarts == kill), timeout=20, message="restarted")
                await eventually(lambda: _flag(relay.replays >= kill and relay.replay is None), timeout=90,
                                 message="replay finished")
    finally:
        supervisor.stop()
    assert relay.replays == kills and len(losses_logged(caplog, schema)) == kills
