"""Registry reads and the ingest gateway under load, against a real registry process: get-by-id and
ID-number lookup at a fixed rate, filtered searches, and ingest batches of 500."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import asyncpg
import httpx
import orjson
from rich.console import Console

from bench.common import ServiceProcess, summarize_latencies
from bench.http_load import build_request, open_loop_http
from eldercare.infra import free_port
from eldercare.synthetic import generate_residents
from shared.auth import Role, issue_token
from shared.db import asyncpg_dsn
from shared.idcard import parse_id_number
from shared.migrations import upgrade
from shared.settings import get_settings

console = Console()
COLUMNS = ("id", "id_number", "name", "phone", "county_code", "township", "village", "address",
           "living_arrangement", "categories", "ability_level", "emergency_contact", "emergency_phone",
           "birth_date", "gender", "status")


def _records(total: int, seed: int):
    for row in generate_residents(total=total, seed=seed):
        facts = parse_id_number(row["id_number"])
        yield (uuid.uuid4(), facts.id_number, row["name"], row.get("phone") or None, row["county_code"],
               row["township"], row["village"], row.get("address") or None, row["living_arrangement"],
               list(row.get("categories") or []), row.get("ability_level"), row.get("emergency_contact") or None,
               row.get("emergency_phone") or None, facts.birth_date, facts.gender, row.get("status") or "active")


async def fill_registry(url: str, total: int, seed: int = 42) -> None:
    """Setup, not measured: the registry's table filled by COPY with the synthetic city."""
    await asyncio.to_thread(upgrade, "registry", url)
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": "registry"})
    try:
        batch: list[tuple] = []
        for record in _records(total, seed):
            batch.append(record)
            if len(batch) == 50_000:
                await conn.copy_records_to_table("residents", records=batch, columns=COLUMNS)
                batch.clear()
        if batch:
            await conn.copy_records_to_table("residents", records=batch, columns=COLUMNS)
        await conn.execute("VACUUM (ANALYZE) residents")  # as an import does: index-only scans need it
    finally:
        await conn.close()


async def sample_residents(url: str, n: int = 20_000) -> list[tuple[str, str, str]]:
    """Up to `n` residents to read back. A 5 % page sample is cheap on the 700k city, but on a small
    registry (the quick bench's 3,000 rows fill ~60 pages) it can pick no page at all, so a short
    sample is topped up by a plain random pick."""
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": "registry"})
    try:
        rows = await conn.fetch("SELECT id, id_number, county_code FROM residents TABLESAMPLE SYSTEM (5) LIMIT $1", n)
        if len(rows) < min(n, 1_000):
            rows = await conn.fetch("SELECT id, id_number, county_code FROM residents ORDER BY random() LIMIT $1", n)
        if not rows:
            raise RuntimeError("the registry holds no residents to read back; fill it first")
        return [(str(r["id"]), r["id_number"], r["county_code"]) for r in rows]
    finally:
        await conn.close()


async def measure_reads(base: str, sample: list[tuple[str, str, str]], rate: float, seconds: float) -> dict:
    token = issue_token(get_settings(), Role.CITY, subject="bench")
    host = base.split("//", 1)[1]
    auth = {"Authorization": f"Bearer {token}"}
    json_headers = {**auth, "Content-Type": "application/json"}
    filters = [
        lambda c: {"county_code": c, "category": "minimum_allowance", "age_min": 80},
        lambda c: {"county_code": c, "living_arrangement": "alone", "ability_level": [3, 4]},
        lambda c: {"county_code": c, "age_min": 90, "age_max": 99, "status": "active"},
        lambda c: {"county_code": c, "name_prefix": "王"},
        lambda c: {"category": "dementia", "gender": "female"},
    ]

    def by_id() -> bytes:
        return build_request("GET", host, f"/v1/residents/{random.choice(sample)[0]}", auth)

    # An ID-number lookup is an identity access: it needs a reason, writes an audit row and is limited
    # to LOOKUPS_PER_WINDOW a minute per caller, so the benchmark is a service desk of many clerks,
    # each token used for at most that many lookups.
    from services.registry.domain.access import LOOKUPS_PER_WINDOW

    desk: list[dict] = []
    uses = {"n": 0}

    def by_number() -> bytes:
        if uses["n"] % LOOKUPS_PER_WINDOW == 0:
            clerk = issue_token(get_settings(), Role.CITY, subject=f"bench:clerk-{uuid.uuid4().hex[:12]}")
            desk[:] = [{"Authorization": f"Bearer {clerk}", "Content-Type": "application/json"}]
        uses["n"] += 1
        body = orjson.dumps({"id_number": random.choice(sample)[1], "with_total": False,
                             "reason": "benchmark: service desk lookups"})
        return build_request("POST", host, "/v1/residents/search", desk[0], body)

    def search() -> bytes:
        body = orjson.dumps({**random.choice(filters)(random.choice(sample)[2]), "limit": 50})
        return build_request("POST", host, "/v1/residents/search", json_headers, body)

    results = {}
    await open_loop_http(base, 200, 2, by_id)  # warm-up: connections, caches, JIT of the query plans
    for name, make, r in (("get_by_id", by_id, rate), ("id_number_lookup", by_number, rate),
                          ("filtered_search", search, max(20.0, rate / 20))):
        latencies, errors = await open_loop_http(base, r, seconds, make)
        results[name] = {"rate_per_s": r, **summarize_latencies(latencies), "errors": errors}
        console.print(f"  {name}: {results[name]}")
    return results


async def measure_ingest(base: str, sample: list[tuple[str, str, str]], batches: int, concurrency: int = 4) -> dict:
    by_county: dict[str, list[str]] = {}
    for rid, _, county in sample:
        by_county.setdefault(county, []).append(rid)
    county = max(by_county, key=lambda c: len(by_county[c]))
    token = issue_token(get_settings(), Role.COUNTY, county=county, subject=f"county:{county}")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    kinds = ["heartbeat", "motion", "door", "water", "power"]

    def batch() -> bytes:
        events = []
        for _ in range(500):
            rid = random.choice(by_county[county])
            if random.random() < 0.7:
                events.append({"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}",
                               "type": "eldercare.county.device.activity.v1", "subject": rid, "countycode": county,
                               "data": {"device_id": f"D-{rid[:8]}", "kind": random.choice(kinds)}})
            else:
                events.append({"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}",
                               "type": "eldercare.county.device.vitals.v1", "subject": rid, "countycode": county,
                               "data": {"device_id": f"B-{rid[:8]}", "heart_rate": random.randint(50, 120),
                                        "spo2": random.randint(88, 100)}})
        return orjson.dumps(events)

    warmup = [batch() for _ in range(2 * concurrency)]
    queue = [batch() for _ in range(batches)]
    accepted = 0
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        async def worker(bodies: list[bytes], timed: bool):
            nonlocal accepted
            while bodies:
                body = bodies.pop()
                t = time.perf_counter()
                r = await client.post("/v1/events", content=body)
                if timed:
                    latencies.append((time.perf_counter() - t) * 1000)
                    accepted += r.json()["accepted"]

        # Warm-up, not measured: connections, each worker's first batches, the relay's start.
        await asyncio.gather(*(worker(warmup, False) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(queue, True) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"events": batches * 500, "accepted": accepted, "seconds": round(seconds, 2),
            "accepted_per_s": round(accepted / seconds), "batch": summarize_latencies(latencies)}


async def bench_registry_api(url: str, bootstrap: str, residents: int, rate: float, seconds: float,
                             ingest_batches: int, reads: bool = True) -> dict:
    console.print(f"Filling the registry with {residents:,} synthetic residents (setup, not measured)…")
    t = time.perf_counter()
    await fill_registry(url, residents)
    console.print(f"  filled in {time.perf_counter() - t:.1f}s")
    port = free_port()
    service = ServiceProcess("registry", url, bootstrap, port)
    try:
        await asyncio.to_thread(service.wait_ready)
        sample = await sample_residents(url)
        read_results = await measure_reads(service.base_url, sample, rate, seconds) if reads else {}
        ingest = await measure_ingest(service.base_url, sample, ingest_batches)
        console.print(f"  ingest: {ingest}")
    finally:
        service.stop()
    return {"reads": read_results, "ingest": ingest}
