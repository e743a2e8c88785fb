"""`eldercare bench backbone`: the outbox relay and the idempotent consumer against the raw limit
of the same broker and database, measured in the same run."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from bench.common import bench_infrastructure, median, raw_consume
from shared.db import Database, connect
from shared.events import make_event
from shared.messaging.consumer import EventConsumer
from shared.messaging.kafka import ensure_topics
from shared.messaging.outbox import add_rows, outbox_row
from shared.messaging.relay import OutboxRelay
from shared.messaging.schema import MESSAGING_DDL, RELAY_PROGRESS_DDL, statements

console = Console()
TRAINING = "eldercare.county.training.recorded.v1"


def _events(n: int, topic: str) -> list[tuple]:
    # ~450-byte CloudEvents, about the size of a resident event.
    return [
        outbox_row(make_event(TRAINING, "county/410928", {"course": f"养老护理员培训第{i % 97}期", "trainees": i},
                              subject=f"resident-{i % 5000}", countycode="410928"), topic=topic)
        for i in range(n)
    ]


async def _schema(url: str, schema: str) -> None:
    conn = await connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        for s in statements(MESSAGING_DDL) + statements(RELAY_PROGRESS_DDL) + ["CREATE TABLE sink (id bigserial, n int)"]:
            await conn.execute(s)
    finally:
        await conn.close()


async def raw_produce(bootstrap: str, topic: str, rows: list[tuple]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=512 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value=r[3], key=r[2].encode()) for r in rows]
        await asyncio.gather(*futures)
        return len(rows) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def relay_throughput(url: str, bootstrap: str, schema: str, topic: str, rows: list[tuple]) -> float:
    conn = await connect(url, schema)
    try:
        async with conn.transaction():
            await add_rows(conn, rows, schema)
    finally:
        await conn.close()
    relay = OutboxRelay(service=schema, database_url=url, schema=schema, bootstrap=bootstrap,
                        partitions=8, topics=[topic], batch_size=2000)
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    try:
        while relay.published_total < len(rows):
            await asyncio.sleep(0.01)
        return len(rows) / (time.perf_counter() - started)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def consumer_throughput(url: str, bootstrap: str, schema: str, topic: str, n: int) -> float:
    async def handler(conn, event, data) -> None:
        await conn.execute("INSERT INTO sink (n) VALUES ($1)", data.trainees)

    db = Database(url, schema, pool_size=2)
    await db.start()
    consumer = EventConsumer(name=f"bench-{uuid.uuid4().hex[:6]}", topics=[topic], handlers={TRAINING: handler},
                             pool=db.pool, bootstrap=bootstrap, batch_size=2000, schema=schema)
    task = asyncio.create_task(consumer.run())
    try:
        while consumer.applied_total == 0:
            await asyncio.sleep(0.005)
        started, base = time.perf_counter(), consumer.applied_total
        while consumer.applied_total < n:
            await asyncio.sleep(0.005)
        return (consumer.applied_total - base) / (time.perf_counter() - started)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.close()


def main(events: int = 50_000, runs: int = 3) -> dict:
    """Run the backbone benchmark on a fresh database and a private broker."""
    with bench_infrastructure() as (url, bootstrap):
        return asyncio.run(_run(url, bootstrap, events, runs))


async def _run(url: str, bootstrap: str, events: int, runs: int) -> dict:
    if True:
        figures: dict[str, list[float]] = {k: [] for k in ("raw_produce", "relay", "raw_consume", "consumer")}
        for run in range(runs):
            tag = uuid.uuid4().hex[:8]
            schema, topic = f"b_{tag}", f"bench.{tag}.v1"
            raw_topic = topic + ".raw"
            await _schema(url, schema)
            await ensure_topics(bootstrap, [topic, raw_topic], 8)
            rows = _events(events, topic)
            figures["raw_produce"].append(await raw_produce(bootstrap, raw_topic, rows))
            figures["relay"].append(await relay_throughput(url, bootstrap, schema, topic, rows))
            figures["raw_consume"].append(await raw_consume(bootstrap, topic, events, 8))
            figures["consumer"].append(await consumer_throughput(url, bootstrap, schema, topic, events))
            console.print(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in figures.items()))
        table = Table(title=f"backbone, {events:,} events of ~450 B, 8 partitions, median of {runs}")
        table.add_column("measure")
        table.add_column("events/s", justify="right")
        table.add_column("vs raw", justify="right")
        rp, rc = median(figures["raw_produce"]), median(figures["raw_consume"])
        table.add_row("raw aiokafka send() loop", f"{rp:,.0f}", "1.00")
        table.add_row("outbox relay (read, publish, mark)", f"{median(figures['relay']):,.0f}",
                      f"{median(figures['relay']) / rp:.2f}")
        table.add_row("raw aiokafka getmany", f"{rc:,.0f}", "1.00")
        table.add_row("idempotent consumer (inbox + 1 insert/event)", f"{median(figures['consumer']):,.0f}",
                      f"{median(figures['consumer']) / rc:.2f}")
        console.print(table)
        return {"events": events, "runs": runs, **{f"{k}_per_s": round(median(v)) for k, v in figures.items()}}
