"""A consumer process killed with SIGKILL in the middle of a batch loses nothing and applies
nothing twice after it restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from aiokafka import AIOKafkaProducer

from shared.db import Database
from shared.messaging.kafka import ensure_topics
from tests.integration.support import COUNTS_DDL, committed_to, create_schema, eventually
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
