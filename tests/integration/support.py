"""Helpers for integration tests: a throwaway schema with messaging tables, reading a topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.db import connect, quote_ident
from shared.messaging.kafka import topic_partitions
from shared.messaging.schema import MESSAGING_DDL, RELAY_PROGRESS_DDL, statements

COUNTS_DDL = "CREATE TABLE counts (key text PRIMARY KEY, n integer NOT NULL, last_seq integer NOT NULL)"


async def create_schema(url: str, schema: str, extra: list[str] = ()) -> None:
    """A schema with the messaging tables and any extra DDL, as a service's migrations would make."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        await conn.execute(f"SET search_path TO {quote_ident(schema)}")
        for statement in statements(MESSAGING_DDL) + statements(RELAY_PROGRESS_DDL) + list(extra):
            await conn.execute(statement)
    finally:
        await conn.close()


async def read_topic(bootstrap: str, topic: str, *, expect: int | None = None, idle: float = 2.0,
                     timeout: float = 60.0) -> list:
    """Every record of a topic from the beginning, without a group (explicit assignment).
    Stops when `expect` records arrived, or after `idle` seconds without new ones."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions: set[int] = set()
        deadline = time.monotonic() + timeout
        while not partitions and time.monotonic() < deadline:
            partitions = (await topic_partitions(consumer)).get(topic, set())
            if not partitions:
                await asyncio.sleep(0.2)
        assert partitions, f"topic {topic} does not exist"
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        records: list = []
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            if batch:
                last_new = time.monotonic()
            if expect is not None and len(records) >= expect:
                # A short extra wait catches records beyond the expected count.
                extra = await consumer.getmany(timeout_ms=500)
                for recs in extra.values():
                    records.extend(recs)
                break
            if expect is None and time.monotonic() - last_new > idle:
                break
        return records
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0, interval: float = 0.2,
                     message: str = "condition not met") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"{message} within {timeout:.0f}s")


async def fetchval(url: str, schema: str, query: str, *args):
    conn = await connect(url, schema)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()
