"""A consumer process killed with SIGKILL in the middle of a batch loses nothing and applies
nothing twice after it restarts; nor do whole service processes (the relay leader, the consumer)
killed under load."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.db import Database, asyncpg_dsn, with_database
from shared.messaging.kafka import ensure_topics
from tests.conftest import TEST_PARTITIONS
from tests.integration.support import COUNTS_DDL, committed_to, create_schema, eventually, stop_processes
from tests.integration.test_backbone_delivery import training_event

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn(url: str, schema: str, bootstrap: str, topic: str, group: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.consumer_process", url, schema, bootstrap, topic, group],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def test_consumer_killed_mid_batch_loses_nothing_and_applies_nothing_twice(database_url, bootstrap, unique):
    schema, topic, group = f"t_{unique}", f"test.{unique}.v1", f"crash-{unique}"
    await create_schema(database_url, schema, [COUNTS_DDL, "CREATE TABLE progress (applied integer NOT NULL)",
                                               "INSERT INTO progress VALUES (0)"])
    await ensure_topics(bootstrap, [topic, topic + ".dlq"], 2)
    keys = [f"r{i}" for i in range(40)]
    events = [training_event(keys[i % 40], i // 40) for i in range(3000)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, value=event.to_json(), key=event.subject.encode()) for event in events]
        ends: dict[int, int] = {}
        for meta in await asyncio.gather(*sent):
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()

    db = Database(database_url, schema, pool_size=2)
    await db.start()

    async def applied() -> int:
        async with db.pool.acquire() as conn:
            return await conn.fetchval("SELECT applied FROM progress")

    async def started_applying() -> bool:
        # Watch uncommitted progress too: the kill must land inside a batch's transaction.
        async with db.pool.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'idle in transaction' AND application_name = ''"
            )) and await applied() >= 500

    try:
        first = spawn(database_url, schema, bootstrap, topic, group)
        await eventually(started_applying, timeout=90, interval=0.05, message="first batches committed")
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = await applied()
        assert 0 < at_kill < 3000, f"the kill should land mid-stream, applied={at_kill}"

        second = spawn(database_url, schema, bootstrap, topic, group)
        try:
            await eventually(lambda: _at_least(applied, 3000), timeout=120, message="all events applied")
            # Offsets committed to the end: every record was applied or skipped, so a double shows now.
            await eventually(lambda: committed_to(bootstrap, group, topic, ends), timeout=60,
                             message="offsets committed to the end")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(10)
        async with db.pool.acquire() as conn:
            counts = {r["key"]: (r["n"], r["last_seq"]) for r in await conn.fetch("SELECT * FROM counts")}
            total_applied = await conn.fetchval("SELECT applied FROM progress")
            inbox = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = $1", group)
    finally:
        await db.close()
    assert total_applied == 3000
    assert inbox == 3000
    assert counts == {k: (75, 74) for k in keys}


async def _at_least(fn, n: int) -> bool:
    return (await fn()) >= n


# --- Whole service processes killed under load -----------------------------------------------


def eldercare_process(args: list[str], env: dict, log_name: str) -> subprocess.Popen:
    """`python -m eldercare.cli <args>` with the test's environment; its log in .state/logs."""
    log_dir = os.path.join(ROOT, ".state", "logs")
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, log_name), "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "eldercare.cli", *args], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def relay_leader(url: str, schema: str) -> int | None:
    """The pid of the process whose relay holds the schema's advisory lock (its connection's
    application_name says '<service>-relay pid=N')."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        name = await conn.fetchval(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() "
            "AND a.application_name LIKE $1", f"{schema}-relay pid=%")
    finally:
        await conn.close()
    return int(name.rsplit("=", 1)[1]) if name else None


async def test_killing_the_relay_leader_and_the_consumer_process_under_load_loses_and_doubles_nothing(
        pg_server_url, private_broker, unique, tmp_path):
    """Real processes: `serve registry` (HTTP only), two `worker registry` (relay leader and standby)
    and `worker reporting` (the consumer). Mid-traffic the relay leader is SIGKILLed (the standby
    takes the lock, a restarted worker becomes the standby) and then the consumer is SIGKILLed and
    restarted; at the end reporting holds every registered resident exactly once."""
    import httpx

    from eldercare.infra import free_port, wait_for_port
    from shared.auth import issue_token
    from shared.settings import PlatformSettings
    from tests.conftest import fresh_id_number

    database = f"eldercare_test_kill_{unique}_{os.getpid()}"
    admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    url = with_database(pg_server_url, database)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": private_broker.bootstrap,
           "REGISTRY_PORT": str(port), "REGISTRY_WORKERS": "1", "RUN_WORKERS_IN_API": "false",
           "KAFKA_PARTITIONS": "2", "RELAY_CHECK_INTERVAL_S": "0.5", "LOG_JSON": "false",
           "ELDERCARE_STATE_DIR": str(tmp_path), "JWT_SECRET": secrets.token_urlsafe(48)}
    token = issue_token(PlatformSettings(jwt_secret=env["JWT_SECRET"]), "county", county="410928")
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = eldercare_process(list(args), env, f"test-kill-{unique}-{'-'.join(args)}.log")
        processes.append(process)
        return process

    created: list[str] = []
    stop = asyncio.Event()

    async def register(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            body = {"name": "王秀英", "id_number": fresh_id_number(), "county_code": "410928", "township": "城关镇",
                    "village": "东街社区", "living_arrangement": "alone", "categories": [], "ability_level": 1}
            response = await client.post("/v1/residents", json=body, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])

    async def counts() -> tuple[int, int, int]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return (await conn.fetchval("SELECT count(*) FROM registry.residents"),
                    await conn.fetchval("SELECT count(*) FROM reporting.residents"),
                    await conn.fetchval("SELECT count(*) FROM registry.outbox WHERE published_at IS NULL"))
        finally:
            await conn.close()

    def more(n: int):
        """A check that n more residents than now are registered."""
        target = len(created) + n

        async def check() -> bool:
            return len(created) >= target
        return check

    try:
        start("serve", "registry")
        first, second = start("worker", "registry"), start("worker", "registry")
        consumer = start("worker", "reporting")
        await asyncio.to_thread(wait_for_port, port, timeout=90)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            writers = [asyncio.create_task(register(client)) for _ in range(4)]
            try:
                await eventually(lambda: _leader_among(url, {first.pid, second.pid}), timeout=90,
                                 message="a registry relay leads")
                await eventually(more(150), timeout=90, message="residents registered")
                leader = await relay_leader(url, "registry")
                killed = first if leader == first.pid else second
                standby = second if killed is first else first
                killed.send_signal(signal.SIGKILL)
                killed.wait()
                await eventually(lambda: _leader_among(url, {standby.pid}), timeout=30,
                                 message="the standby took the relay over")
                restarted = start("worker", "registry")

                async def folding() -> bool:
                    return (await counts())[1] > 0

                await eventually(folding, timeout=90, message="reporting folding")
                await eventually(more(150), timeout=90, message="more residents")
                consumer.send_signal(signal.SIGKILL)
                consumer.wait()
                await eventually(more(100), timeout=90, message="traffic with no consumer")
                consumer = start("worker", "reporting")
                await eventually(more(150), timeout=90, message="traffic after the restart")
            finally:
                stop.set()
                await asyncio.gather(*writers, return_exceptions=True)
            for task in writers:
                assert task.exception() is None, repr(task.exception())

        async def settled() -> bool:
            in_registry, in_reporting, pending = await counts()
            return in_registry == in_reporting == len(created) and pending == 0

        await eventually(settled, timeout=120, message="reporting holds every resident exactly once")
        await asyncio.sleep(2.0)  # anything applied twice or late would show now
        assert await counts() == (len(created), len(created), 0)
        assert len(set(created)) == len(created)
        assert await relay_leader(url, "registry") in {standby.pid, restarted.pid}
    finally:
        stop_processes(processes)
        admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def _leader_among(url: str, pids: set[int]) -> bool:
    return await relay_leader(url, "registry") in pids


async def test_the_launcher_starts_a_killed_service_again_and_gives_up_on_a_crash_loop(
        database_url, bootstrap, tmp_path, monkeypatch):
    """`make up`'s supervision: a service process killed outright is started again (its relay leads
    again), but one that dies three times within a minute of starting stops the platform."""
    import httpx

    from eldercare.infra import free_port
    from eldercare.launcher import Infrastructure, ServiceProcesses
    from shared.settings import PlatformSettings

    port = free_port()
    monkeypatch.setenv("ORDERS_PORT", str(port))
    monkeypatch.setenv("LOG_JSON", "false")
    # The suite's broker holds the platform topics with the suite's partition count.
    settings = PlatformSettings(orders_port=port, kafka_partitions=TEST_PARTITIONS, jwt_secret=secrets.token_urlsafe(48))
    infra = Infrastructure(database_url=database_url, bootstrap=bootstrap)
    services = ServiceProcesses()

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(f"http://127.0.0.1:{port}/readyz")
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json()["relay"]["leader"]

    def kill() -> None:
        process = services.processes["orders"]
        process.send_signal(signal.SIGKILL)
        process.wait()

    try:
        services.start(settings, infra, tmp_path, ("orders",))
        await eventually(ready, timeout=90, message="orders ready")
        first = services.processes["orders"].pid
        assert services.restart_exited(settings, infra, tmp_path) == []
        kill()
        assert services.restart_exited(settings, infra, tmp_path) == ["orders"]
        assert services.processes["orders"].pid != first
        await eventually(ready, timeout=90, message="orders ready again, its relay leading")
        kill()
        assert services.restart_exited(settings, infra, tmp_path) == ["orders"]
        kill()
        with pytest.raises(RuntimeError, match="keeps stopping"):
            services.restart_exited(settings, infra, tmp_path)
    finally:
        services.stop()
