"""`eldercare bench alerts`: telemetry readings evaluated per second when fed straight into the
ingest topic (against a raw aiokafka getmany of the same records, in the same run), and the delay
from an SOS posted to the registry's gateway to its frame on the alert stream while a background
of readings flows through the gateway."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console

from bench.common import ServiceProcess, raw_consume, summarize_latencies
from eldercare.infra import free_port
from shared.auth import Role, issue_token
from shared.db import Database
from shared.events.residents import ResidentSnapshot
from shared.messaging.kafka import ensure_topics
from shared.messaging.partitioning import partition_for
from shared.messaging.topics import INGEST, all_topic_names
from shared.migrations import upgrade_async
from shared.process import freeze_startup_heap
from shared.settings import get_settings

console = Console()
COUNTIES = ["410928", "410922", "410923", "410926", "410927", "410902"]


def snapshots(n: int, seed: int = 7) -> list[ResidentSnapshot]:
    rng = random.Random(seed)
    return [ResidentSnapshot(
        resident_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), county_code=rng.choice(COUNTIES),
        name="测试", birth_date=date(1935 + rng.randrange(30), 1 + rng.randrange(12), 1 + rng.randrange(28)),
        gender=rng.choice(["male", "female"]), township="城关镇", village="东街社区",
        living_arrangement=rng.choice(["alone", "empty_nest", "with_family", "with_family"])) for _ in range(n)]


def readings(residents: list[ResidentSnapshot], total: int, seed: int = 11):
    """Vitals (60 %) and activity (40 %) in time order; about one vitals reading in 200 out of range."""
    rng = random.Random(seed)
    base = datetime.now(timezone.utc) - timedelta(minutes=30)
    for i in range(total):
        r = residents[rng.randrange(len(residents))]
        at = (base + timedelta(milliseconds=i * 5)).isoformat()
        if rng.random() < 0.6:
            hr = rng.randint(140, 160) if rng.random() < 0.005 else rng.randint(55, 105)
            data = {"device_id": f"B-{r.resident_id[:8]}", "heart_rate": hr, "spo2": rng.randint(93, 100)}
            kind = "eldercare.county.device.vitals.v1"
        else:
            data = {"device_id": f"M-{r.resident_id[:8]}", "kind": rng.choice(["heartbeat", "motion", "door"])}
            kind = "eldercare.county.device.activity.v1"
        yield r.resident_id, orjson.dumps({
            "specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{r.county_code}", "type": kind,
            "subject": r.resident_id, "time": at, "countycode": r.county_code, "data": data})


async def produce(bootstrap: str, records, partitions: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        batches: dict[int, object] = {}
        pending = []
        for key, value in records:
            p = partition_for(key.encode(), partitions)
            batch = batches.get(p) or producer.create_batch()
            if batch.append(key=key.encode(), value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, INGEST.name, partition=p))
                batch = producer.create_batch()
                batch.append(key=key.encode(), value=value, timestamp=None)
            batches[p] = batch
        for p, batch in batches.items():
            pending.append(await producer.send_batch(batch, INGEST.name, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def evaluated_throughput(url: str, bootstrap: str, residents: int, total: int) -> dict:
    from services.alerts.handlers import _upsert_snapshots
    from services.alerts.store import rule_book
    from services.alerts.worker import ingest_consumer

    settings = get_settings()
    partitions = settings.kafka_partitions
    await ensure_topics(bootstrap, all_topic_names(), partitions)
    await upgrade_async("alerts", url)
    db = Database(url, schema="alerts")
    await db.start()
    try:
        people = snapshots(residents)
        async with db.transaction() as conn:
            for i in range(0, len(people), 5000):
                await _upsert_snapshots(conn, await rule_book(conn), datetime.now(timezone.utc), people[i:i + 5000])
        console.print(f"Producing {total:,} readings for {residents:,} residents (setup)…")
        await produce(bootstrap, readings(people, total), partitions)
        del people
        freeze_startup_heap()  # as a service does once started: the setup's heap is not the consumer's
        raw = await raw_consume(bootstrap, INGEST.name, total, partitions, max_records=5000, timeout_ms=500,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
        console.print(f"  raw getmany: {raw:,.0f} records/s")
        assert db.pool is not None
        consumer = ingest_consumer(db.pool, bootstrap, name=f"bench-alerts-{uuid.uuid4().hex[:6]}")
        task = asyncio.create_task(consumer.run())
        # Timed from the first committed batch: joining the group (several seconds on the embedded
        # broker) is not evaluation.
        while consumer.applied_total == 0:
            await asyncio.sleep(0.01)
        first, started, cpu = consumer.applied_total, time.perf_counter(), time.process_time()
        while consumer.applied_total < total:
            await asyncio.sleep(0.02)
            if time.perf_counter() - started > 900:
                raise TimeoutError("the consumer did not evaluate everything in time")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        rate = (total - first) / elapsed
        async with db.connection() as conn:
            alerts = await conn.fetchval("SELECT count(*) FROM alerts")
        return {"residents": residents, "readings": total, "raw_getmany_per_s": round(raw),
                "evaluated_per_s": round(rate), "evaluated_vs_raw": round(rate / raw, 3), "alerts_raised": alerts,
                # The consumer's share of a core while evaluating (the rest it waited for PostgreSQL,
                # the broker, or a core): near 1, Python is the limit.
                "cpu_share": round(cpu / elapsed, 2)}
    finally:
        await db.close()


async def sos_latency(url: str, bootstrap: str, rate: int, seconds: float, sos_per_s: float = 4.0) -> dict:
    settings = get_settings()
    county = "410928"
    county_token = issue_token(settings, Role.COUNTY, county=county, subject="bench")
    registry = ServiceProcess("registry", url, bootstrap, free_port(), extra_env={"REGISTRY_WORKERS": "1"})
    alerts = ServiceProcess("alerts", url, bootstrap, free_port())
    try:
        await asyncio.to_thread(registry.wait_ready)
        await asyncio.to_thread(alerts.wait_ready)
        headers = {"Authorization": f"Bearer {county_token}"}
        n_sos = int(seconds * sos_per_s)
        people: list[str] = []
        async with httpx.AsyncClient(base_url=registry.base_url, timeout=30, headers=headers) as client:
            from shared.idcard import make_id_number

            rng = random.Random(5)
            seen: set[str] = set()

            async def register(i: int) -> str:
                while True:
                    number = make_id_number("410928", date(1940 + rng.randrange(20), 1 + rng.randrange(12),
                                                           1 + rng.randrange(28)), rng.randrange(1000))
                    if number not in seen:
                        seen.add(number)
                        break
                r = await client.post("/v1/residents", json={
                    "name": f"压测{i}", "id_number": number, "county_code": county, "township": "城关镇",
                    "village": "东街社区", "living_arrangement": "with_family"})
                r.raise_for_status()
                return r.json()["id"]

            for start in range(0, n_sos + 200, 50):
                people += await asyncio.gather(*(register(i) for i in range(start, min(n_sos + 200, start + 50))))
        db = Database(url, schema="alerts")
        await db.start()
        try:
            while True:  # the alerts projection holds them all
                async with db.connection() as conn:
                    if await conn.fetchval("SELECT count(*) FROM residents") >= len(people):
                        break
                await asyncio.sleep(0.5)
        finally:
            await db.close()
        return await _measure(registry.base_url, alerts.base_url, bootstrap, county, county_token, people, n_sos,
                              rate, seconds)
    finally:
        registry.stop()
        alerts.stop()


async def _measure(registry: str, alerts: str, bootstrap: str, county: str, token: str, people: list[str], n_sos: int,
                   rate: int, seconds: float) -> dict:
    sos_people, background = people[:n_sos], people[n_sos:]
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    ready = asyncio.Event()

    async def listen():
        async with httpx.AsyncClient(timeout=None) as client:
            async with client.stream("GET", f"{alerts}/v1/alerts/stream", params={"access_token": token}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("event: ready"):
                        ready.set()
                    elif line.startswith("data: ") and '"kind":"raised"' in line:
                        now = time.perf_counter()
                        alert = orjson.loads(line[6:])["alert"]
                        if alert["cause"] == "sos":
                            seen.setdefault(alert["resident_id"], now)

    rng = random.Random(3)
    base = datetime.now(timezone.utc)

    def vitals_batch(i: int, size: int) -> bytes:
        return orjson.dumps([{"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}",
                              "type": "eldercare.county.device.vitals.v1", "subject": rng.choice(background),
                              "countycode": county, "time": (base + timedelta(milliseconds=i * size + j)).isoformat(),
                              "data": {"device_id": "B", "heart_rate": rng.randint(60, 100)}} for j in range(size)])

    on_topic: dict[str, float] = {}
    listener = asyncio.create_task(listen())
    watcher = asyncio.create_task(watch_sos(bootstrap, on_topic))
    await asyncio.wait_for(ready.wait(), 30)
    await asyncio.sleep(1.0)  # the watcher has its partitions
    # Batches of 500; under 500/s a second's worth, so a slow run still posts a background.
    per_batch = max(1, min(500, int(rate)))
    batches = int(rate / per_batch * seconds)
    bodies = [vitals_batch(i, per_batch) for i in range(batches)]
    errors = 0
    async with httpx.AsyncClient(base_url=registry, timeout=30, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as client:
        async def post(body: bytes) -> None:
            nonlocal errors
            if (await client.post("/v1/events", content=body)).status_code != 200:
                errors += 1

        async def sos(rid: str) -> None:
            body = orjson.dumps([{"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}",
                                  "type": "eldercare.county.device.sos.v1", "subject": rid, "countycode": county,
                                  "data": {"device_id": f"SOS-{rid[:8]}"}}])
            sent[rid] = time.perf_counter()
            await post(body)

        tasks = []
        start = time.perf_counter()
        schedule = sorted([(i * per_batch / rate, "b", i) for i in range(batches)]
                          + [(0.1 + i * seconds / n_sos, "s", i) for i in range(n_sos)])
        for at, kind, i in schedule:
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(bodies[i]) if kind == "b" else sos(sos_people[i])))
        await asyncio.gather(*tasks)
        achieved = batches * per_batch / (time.perf_counter() - start)
    deadline = time.perf_counter() + 30
    while len(seen) < len(sent) and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    listener.cancel()
    watcher.cancel()
    latencies = [(seen[k] - sent[k]) * 1000 for k in sent if k in seen]
    # The same delay split where the SOS reaches the ingest topic: the registry's part (gateway,
    # outbox, relay) and the alerts service's (fetch, detect, commit, stream).
    split = [k for k in sent if k in seen and k in on_topic]
    return {"background_target_per_s": rate, "background_achieved_per_s": round(achieved), "errors": errors,
            "sos": len(sent), "missing": len(sent) - len(latencies), **summarize_latencies(latencies),
            "gateway_to_topic": summarize_latencies([(on_topic[k] - sent[k]) * 1000 for k in split]),
            "topic_to_stream": summarize_latencies([(seen[k] - on_topic[k]) * 1000 for k in split])}


async def watch_sos(bootstrap: str, first_seen: dict[str, float]) -> None:
    consumer = AIOKafkaConsumer(INGEST.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=20)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if b"device.sos" in (record.value or b""):
                        first_seen.setdefault(orjson.loads(record.value)["subject"], now)
    finally:
        await consumer.stop()


async def bench_alerts(url: str, bootstrap: str, residents: int, readings_total: int, rate: int,
                       seconds: float, part: str) -> dict:
    result: dict = {}
    if part in ("throughput", "all"):
        result["throughput"] = await evaluated_throughput(url, bootstrap, residents, readings_total)
        console.print(f"  evaluated: {result['throughput']}")
    if part in ("latency", "all"):
        result["latency"] = await sos_latency(url, bootstrap, rate, seconds)
        console.print(f"  SOS gateway → stream: {result['latency']}")
    return result
