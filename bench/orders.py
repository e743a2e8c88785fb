"""`eldercare bench orders`: orders placed per second through a real orders process (HTTP, token,
Idempotency-Key, projection lookup, eligibility, capacity, policy, caps, budget rows, split, order
row, outbox row, idempotency row — one transaction each), open loop at a fixed rate, against raw
asyncpg inserts of the same rows (one INSERT per transaction, same pool size) in the same run.

Setup, not measured: the orders schema migrated and seeded, residents in its projection by COPY
(random counties, categories and ability levels), one provider per county offering the menu.
Afterwards the figures are reconciled: every order's split adds up to its price, and the budgets'
spent columns equal the sums of the orders' shares per county and source, the residents' caps used
the sums of what the orders took from them. `ORDERS_WORKERS=2` runs the service with two processes."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import asyncpg
import orjson
from rich.console import Console

from bench.common import ServiceProcess, bench_infrastructure, summarize_latencies
from bench.http_load import build_request, open_loop_http
from eldercare.infra import free_port
from services.orders.domain.catalog import load_menu
from shared.auth import Role, issue_token
from shared.db import _init_connection, asyncpg_dsn, connect
from shared.migrations import upgrade
from shared.regions import TOWNSHIPS, load_counties
from shared.settings import get_settings

console = Console()
CATEGORIES = ["extreme_poverty_dispersed", "minimum_allowance", "low_income", "severe_disability", "dementia"]


async def setup(url: str, residents: int, providers: bool = True) -> tuple[list[tuple[str, str]], dict[str, str]]:
    await asyncio.to_thread(upgrade, "orders", url)
    conn = await connect(url, "orders")
    try:
        from services.orders.handlers import seed_reference

        async with conn.transaction():
            await seed_reference(conn)
        rng = random.Random(42)
        counties = list(load_counties())
        rows = []
        for _ in range(residents):
            county = rng.choice(counties)
            cats = [c for c in CATEGORIES if rng.random() < 0.08]
            rows.append((uuid.uuid4(), county, "张秀英", date(1930 + rng.randrange(30), 1 + rng.randrange(12), 1),
                         rng.choice(TOWNSHIPS.get(county, ["城关镇"])), "东街社区",
                         rng.choice(["alone", "empty_nest", "with_family"]), cats, rng.choice([None, 0, 1, 2, 3, 4]),
                         "active", False, 35.76, 115.03, None, 1))
        await conn.copy_records_to_table("residents", records=rows, columns=(
            "resident_id", "county_code", "name", "birth_date", "township", "village", "living_arrangement",
            "categories", "ability_level", "status", "family_bed", "home_lat", "home_lon", "date_of_death",
            "version"))
        offered: dict[str, str] = {}
        for county in counties if providers else []:
            pid = f"prov-{county}-bench"
            offered[county] = pid
            await conn.execute("INSERT INTO providers (id, name, provider_type, county_code) VALUES ($1,$2,$3,$4)",
                               pid, "综合养老服务中心", "street_centre", county)
            await conn.executemany(
                "INSERT INTO provider_items (provider_id, service_code, price_fen, daily_capacity) VALUES ($1,$2,$3,$4)",
                [(pid, m.code, m.base_price_fen, 10_000_000) for m in load_menu()])
        await conn.execute("ANALYZE")
        return [(str(r[0]), r[1]) for r in rows], offered
    finally:
        await conn.close()


async def place_orders(base: str, residents, providers, rate: float, seconds: float) -> dict:
    token = issue_token(get_settings(), Role.CITY, subject="city:bench")
    host = base.split("//", 1)[1]
    start = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()

    def order() -> bytes:
        rid, county = random.choice(residents)
        body = orjson.dumps({"resident_id": rid, "provider_id": providers[county], "channel": "county_operator",
                             "items": [{"service_code": random.choice(["cleaning", "meal", "emotional_support"]),
                                        "quantity": random.randint(1, 2)}], "scheduled_start": start})
        return build_request("POST", host, "/v1/orders", {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex}, body)

    await closed_loop(base, order, 8, 2)  # warm-up: connections, plans, caches
    # The open loop at the offered rate (latency includes any queueing), then, once the relay has
    # published what that placed, capacity: as many as 16 callers waiting for their answers get.
    latencies, errors = await open_loop_http(base, rate, seconds, order)
    console.print(f"  open loop at {rate:g}/s: {summarize_latencies(latencies)}, {errors} errors")
    await asyncio.sleep(5)
    capacity = await closed_loop(base, order, 16, seconds)
    console.print(f"  closed loop (16 callers): {capacity}")
    return {"capacity": capacity, "open_loop": {"rate_per_s": rate, "seconds": seconds,
                                                **summarize_latencies(latencies), "errors": errors}}


async def closed_loop(base: str, make, callers: int, seconds: float) -> dict:
    from urllib.parse import urlsplit

    from bench.http_load import Connection

    parts = urlsplit(base)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        conn = Connection(reader, writer)
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            status = await conn.request(make())
            latencies.append((time.perf_counter() - t) * 1000)
            errors += not 200 <= status < 300
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    return {"orders_per_s": round(len(latencies) / elapsed), **summarize_latencies(latencies), "errors": errors}


async def raw_inserts(url: str, concurrency: int = 10) -> float:
    """Rows/s of one INSERT per transaction of the orders just placed, into a same-shaped table."""
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": "orders"})
    try:
        await conn.execute("DROP TABLE IF EXISTS raw_orders")
        await conn.execute("CREATE TABLE raw_orders (LIKE orders INCLUDING ALL)")
        rows = await conn.fetch("SELECT * FROM orders")
        columns = list(rows[0].keys())
    finally:
        await conn.close()
    sql = (f"INSERT INTO raw_orders ({', '.join(columns)}) VALUES "
           f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))})")
    # The service's own connection set-up (the jsonb codec), so both sides encode rows alike.
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=concurrency, max_size=concurrency,
                                     server_settings={"search_path": "orders"}, init=_init_connection)
    queue = list(rows)

    async def worker() -> None:
        async with pool.acquire() as c:
            while queue:
                row = queue.pop()
                async with c.transaction():
                    await c.execute(sql, *row.values())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = len(rows) / (time.perf_counter() - started)
    await pool.close()
    return rate


async def reconcile(url: str) -> dict:
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": "orders"})
    try:
        orders = await conn.fetchval("SELECT count(*) FROM orders")
        unbalanced = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE price_fen <> government_fen + collective_fen + social_fen + personal_fen")
        mismatched = await conn.fetchval(
            """SELECT count(*) FROM (
                 SELECT county_code, month, s.source, sum(s.fen) fen FROM orders,
                   LATERAL (VALUES ('government', government_fen), ('collective', collective_fen),
                                   ('social', social_fen)) AS s(source, fen)
                 GROUP BY 1, 2, 3) o
               FULL JOIN budget_spend b USING (county_code, month, source)
               WHERE coalesce(o.fen, 0) <> coalesce(b.spent_fen, 0)""")
        caps = await conn.fetchval(
            """SELECT count(*) FROM (
                 SELECT resident_id, month, e.key AS benefit_code, sum(e.value::bigint) fen
                 FROM orders, jsonb_each_text(entitlement_use) e GROUP BY 1, 2, 3) o
               FULL JOIN entitlement_usage u USING (resident_id, month, benefit_code)
               WHERE coalesce(o.fen, 0) <> coalesce(u.used_fen, 0)""")
        outbox = await conn.fetchval("SELECT count(*) FROM outbox")
        return {"orders": orders, "unbalanced_orders": unbalanced, "budget_mismatches": mismatched,
                "cap_mismatches": caps, "outbox_rows": outbox}
    finally:
        await conn.close()


async def bench_orders(url: str, bootstrap: str, residents: int, rate: float, seconds: float) -> dict:
    console.print(f"Setup: orders schema, {residents:,} residents in the projection, a provider per county…")
    people, providers = await setup(url, residents)
    service = ServiceProcess("orders", url, bootstrap, free_port())
    try:
        await asyncio.to_thread(service.wait_ready)
        placed = await place_orders(service.base_url, people, providers, rate, seconds)
        console.print(f"  placed: {placed}")
    finally:
        service.stop()
    raw = await raw_inserts(url)
    console.print(f"  raw asyncpg INSERT per transaction: {raw:,.0f} rows/s")
    checks = await reconcile(url)
    console.print(f"  reconciliation: {checks}")
    return {"placed": placed, "raw_inserts_per_s": round(raw), "checks": checks}


def main(residents: int = 20_000, rate: float = 1000, seconds: float = 10, part: str = "place",
         orders: int = 100_000, workers: int = 8, raw_sample: int = 20_000) -> dict:
    """`part`: place (orders/s through a real orders process), lifecycle (N orders through their
    whole lifecycle, reconciled: bench/orders_lifecycle.py) or all."""
    from bench.common import fresh_database

    if part not in ("place", "lifecycle", "all"):
        raise ValueError("part is place, lifecycle or all")
    results: dict = {}
    with bench_infrastructure() as (url, bootstrap):
        if part in ("place", "all"):
            results["place"] = asyncio.run(bench_orders(url, bootstrap, residents, rate, seconds))
        if part in ("lifecycle", "all"):
            from bench.orders_lifecycle import bench_lifecycle

            if part == "all":
                fresh_database(url)
            results["lifecycle"] = asyncio.run(bench_lifecycle(url, orders, residents, workers, raw_sample))
    return results
