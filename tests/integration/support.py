"""Helpers for the tests: a throwaway schema with messaging tables, reading a topic, waiting for a
condition (`eventually`, also used by the browser test)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.db import asyncpg_dsn, connect, quote_ident, with_database
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


def json_records(records: list) -> list[tuple[Any, dict]]:
    """(record, decoded value) for the records holding a JSON object. Topics are shared by the suite and
    some tests write malformed records on purpose (to see them dead-lettered); readers skip those."""
    import orjson

    decoded = []
    for record in records:
        try:
            value = orjson.loads(record.value) if record.value else None
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            decoded.append((record, value))
    return decoded


async def read_topic(bootstrap: str, topic: str, *, expect: int | None = None, idle: float = 2.0,
                     timeout: float = 60.0) -> list:
    """Every record of a topic from the beginning, without a group (explicit assignment).
    Stops when `expect` records arrived, or after `idle` seconds without new ones."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout

        async def partitions_of_topic() -> set[int]:
            return (await topic_partitions(consumer)).get(topic, set())

        partitions = await eventually(partitions_of_topic, timeout=timeout, message=f"topic {topic} exists")
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


def eventually(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2,
               message: str = "condition not met"):
    """The tests' one way to wait: call `check` until it returns something truthy, and give that back;
    fail naming `message` and the last value after `timeout` seconds. In an async test the check is
    async (or returns an awaitable) and the call is awaited: `await eventually(...)`. A plain check
    makes the call block between tries, for the browser test (never in an async test: it would hold
    up the event loop the condition depends on)."""
    deadline = time.monotonic() + timeout
    first = check()
    if inspect.isawaitable(first):
        return _eventually_async(check, first, deadline, timeout, interval, message)
    last = first
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} within {timeout:.0f}s (last: {last!r})")
        time.sleep(interval)
        last = check()
    return last


async def _eventually_async(check, first: Awaitable, deadline: float, timeout: float, interval: float,
                            message: str):
    last = await first
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} within {timeout:.0f}s (last: {last!r})")
        await asyncio.sleep(interval)
        last = await check()
    return last


async def committed_to(bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> bool:
    """Whether `group` has committed every partition of `topic` up to `ends` {partition: end offset}:
    then it has applied (or skipped as a redelivery) everything before them."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        return {p: await probe.committed(TopicPartition(topic, p)) for p in ends} == ends
    finally:
        await probe.stop()


async def fetchval(url: str, schema: str, query: str, *args):
    conn = await connect(url, schema)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(pg_server_url: str, name: str):
    """A database of the test's own on the suite's server (for services run as processes, which
    migrate it themselves), dropped afterwards whatever is still connected; yields its URL."""
    admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(pg_server_url, name)
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def stop_processes(processes: list[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM every process still running, then wait for each; kill one not gone within `grace` s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
