"""`eldercare bench reporting`: events folded into aggregates per second (against raw getmany on
the same broker), replay of the registry's history, and the delay from the ingest gateway to a
delta on the live stream at a fixed event rate."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console

from bench.common import ServiceProcess, raw_consume, summarize_latencies
from eldercare.infra import free_port
from eldercare.synthetic import generate_residents
from shared.auth import Role, issue_token
from shared.idcard import parse_id_number
from shared.messaging.kafka import ensure_topics
from shared.messaging.partitioning import partition_for
from shared.messaging.topics import INGEST, RESIDENTS, all_topic_names
from shared.settings import get_settings

console = Console()


def registered_events(total: int, seed: int = 42):
    """The registry's history as it would publish it: one registered event per resident."""
    now = datetime.now(timezone.utc).isoformat()
    for row in generate_residents(total=total, seed=seed):
        facts = parse_id_number(row["id_number"])
        rid = str(uuid.uuid4())
        snapshot = {"resident_id": rid, "county_code": row["county_code"], "name": row["name"],
                    "birth_date": facts.birth_date.isoformat(), "gender": facts.gender, "township": row["township"],
                    "village": row["village"], "living_arrangement": row["living_arrangement"],
                    "categories": list(row.get("categories") or []), "ability_level": row.get("ability_level"),
                    "status": row.get("status") or "active", "family_bed": False, "version": 1}
        if row.get("family_doctor_contract"):
            signed_on = row.get("family_doctor_signed_on")
            snapshot |= {"family_doctor_contract": True} | (
                {"family_doctor_signed_on": signed_on.isoformat()} if signed_on else {})
        yield rid, orjson.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "source": "registry",
                                 "type": "eldercare.resident.registered.v1", "subject": rid, "time": now,
                                 "countycode": row["county_code"], "data": {"resident": snapshot}})


async def produce_history(bootstrap: str, total: int, partitions: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        batches: dict[int, object] = {}
        pending = []
        for rid, value in registered_events(total):
            p = partition_for(rid.encode(), partitions)
            batch = batches.get(p) or producer.create_batch()
            if batch.append(key=rid.encode(), value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, RESIDENTS.name, partition=p))
                batch = producer.create_batch()
                batch.append(key=rid.encode(), value=value, timestamp=None)
            batches[p] = batch
        for p, batch in batches.items():
            pending.append(await producer.send_batch(batch, RESIDENTS.name, partition=p))
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def wait_folded(client: httpx.AsyncClient, total: int, timeout: float = 900) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        status = (await client.get("/v1/admin/rebuild")).json()
        if status["applied"] >= total and status["lag"] == 0:
            return time.perf_counter() - started
        await asyncio.sleep(0.2)
    raise TimeoutError("reporting did not fold everything in time")


async def stream_latency(reporting: str, registry: str, bootstrap: str, rate: int, seconds: float,
                         per_batch: int = 100) -> dict:
    """Post `rate` events/s (batches of `per_batch`, each with one uniquely named facility report)
    to the ingest gateway; time each batch from the post to its delta on the SSE stream."""
    settings = get_settings()
    viewer = issue_token(settings, Role.VIEWER, subject="bench")
    county = "410928"
    county_token = issue_token(settings, Role.COUNTY, county=county)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    on_topic: dict[str, float] = {}
    stop = asyncio.Event()

    async def listen(ready: asyncio.Event):
        async with httpx.AsyncClient(timeout=None) as client:
            async with client.stream("GET", f"{reporting}/v1/stream", params={"access_token": viewer}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("event: snapshot"):
                        ready.set()
                    if line.startswith("data: ") and '"facilities"' in line:
                        now = time.perf_counter()
                        for facility in orjson.loads(line[6:]).get("facilities", []):
                            seen.setdefault(facility["facility_id"], now)
                    if stop.is_set():
                        return

    def batch(i: int) -> bytes:
        events = [{"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}",
                   "type": "eldercare.county.facility.reported.v1", "countycode": county,
                   "data": {"facility_id": f"bench-{i}", "facility_type": "happiness_home", "name": f"幸福院{i}",
                            "beds": 10, "nursing_beds": 6, "occupied": 5}}]
        events += [{"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}",
                    "type": "eldercare.county.training.recorded.v1", "countycode": county,
                    "data": {"course": "护理员培训", "trainees": 1}} for _ in range(per_batch - 1)]
        return orjson.dumps(events)

    ready = asyncio.Event()
    listener = asyncio.create_task(listen(ready))
    watcher = asyncio.create_task(watch_topic(bootstrap, on_topic))
    await asyncio.wait_for(ready.wait(), 30)
    batches_per_s = rate / per_batch
    total = int(batches_per_s * seconds)
    bodies = [batch(i) for i in range(total)]
    errors = 0
    async with httpx.AsyncClient(base_url=registry, timeout=30, headers={
            "Authorization": f"Bearer {county_token}", "Content-Type": "application/json"}) as client:
        async def post(i: int):
            nonlocal errors
            sent[f"bench-{i}"] = time.perf_counter()
            r = await client.post("/v1/events", content=bodies[i])
            if r.status_code != 200:
                errors += 1

        tasks = []
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / batches_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        achieved = total * per_batch / (time.perf_counter() - start)
    deadline = time.perf_counter() + 30
    while len(seen) < total and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    listener.cancel()
    watcher.cancel()
    latencies = [(seen[k] - sent[k]) * 1000 for k in sent if k in seen]
    # The same delay split where the event reaches the ingest topic: the registry's part (gateway,
    # outbox, relay) and reporting's (fetch, fold, commit, stream).
    split = [k for k in sent if k in seen and k in on_topic]
    return {"target_events_per_s": rate, "achieved_events_per_s": round(achieved), "errors": errors,
            "missing": total - len(latencies), **summarize_latencies(latencies),
            "gateway_to_topic": summarize_latencies([(on_topic[k] - sent[k]) * 1000 for k in split]),
            "topic_to_stream": summarize_latencies([(seen[k] - on_topic[k]) * 1000 for k in split])}


async def watch_topic(bootstrap: str, first_seen: dict[str, float]) -> None:
    """When each bench facility report appears on the ingest topic (a short fetch wait, so the
    watcher itself adds little)."""
    consumer = AIOKafkaConsumer(INGEST.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=20)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if b"facility.reported" in (record.value or b""):
                        facility = orjson.loads(record.value)["data"].get("facility_id", "")
                        first_seen.setdefault(facility, now)
    finally:
        await consumer.stop()


async def bench_reporting(url: str, bootstrap: str, residents: int, rate: int, seconds: float) -> dict:
    settings = get_settings()
    partitions = settings.kafka_partitions
    await ensure_topics(bootstrap, all_topic_names(), partitions)
    console.print(f"Producing the registry's history: {residents:,} registered events (setup)…")
    produced = await produce_history(bootstrap, residents, partitions)
    console.print(f"  produced in {produced:.1f}s")
    raw = await raw_consume(bootstrap, RESIDENTS.name, residents, partitions, max_records=10_000, timeout_ms=500,
                            max_partition_fetch_bytes=4 * 1024 * 1024)
    console.print(f"  raw getmany: {raw:,.0f} events/s")
    city = issue_token(settings, Role.CITY, subject="bench")
    reporting = ServiceProcess("reporting", url, bootstrap, free_port())
    registry = ServiceProcess("registry", url, bootstrap, free_port())
    result: dict = {"residents": residents, "raw_getmany_per_s": round(raw)}
    try:
        await asyncio.to_thread(reporting.wait_ready)
        async with httpx.AsyncClient(base_url=reporting.base_url, timeout=30,
                                     headers={"Authorization": f"Bearer {city}"}) as client:
            fold_seconds = await wait_folded(client, residents)
            result["first_fold_seconds"] = round(fold_seconds, 1)
            result["fold_events_per_s"] = round(residents / fold_seconds)
            result["fold_vs_raw"] = round(residents / fold_seconds / raw, 3)
            console.print(f"  folded {residents:,} in {fold_seconds:.1f}s ({result['fold_events_per_s']:,}/s, "
                          f"{result['fold_vs_raw']} × raw)")
            started = time.perf_counter()
            (await client.post("/v1/admin/rebuild")).raise_for_status()
            await wait_folded(client, residents)
            result["replay_seconds"] = round(time.perf_counter() - started, 1)
            console.print(f"  replay (rebuild) of {residents:,}: {result['replay_seconds']}s")
        await asyncio.to_thread(registry.wait_ready)
        result["stream"] = await stream_latency(reporting.base_url, registry.base_url, bootstrap, rate,
                                                seconds)
        console.print(f"  stream: {result['stream']}")
    finally:
        reporting.stop()
        registry.stop()
    return result
