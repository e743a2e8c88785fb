"""PostgreSQL restart under traffic: how long after PostgreSQL is back the services serve again.

Its own embedded PostgreSQL (a fresh data folder) and broker, `eldercare serve registry` and
`eldercare serve reporting` as processes (relay and consumer in them), four county clients
registering residents over HTTP (on 503 they wait and retry with the same Idempotency-Key) and a
dashboard reader. Each run stops PostgreSQL (fast shutdown) or kills every PostgreSQL process
(SIGKILL: crash recovery on start), keeps it away 5 s, starts it again, and measures from the
moment it accepts connections again to the first successful registration, the first successful
dashboard read, and reporting holding every resident the registry held at that moment."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx

from bench.common import STATE
from eldercare.infra import EmbeddedBroker, EmbeddedPostgres, free_port, wait_for_port
from shared.auth import issue_token
from shared.db import asyncpg_dsn, ensure_database
from shared.idcard import make_id_number
from shared.settings import PlatformSettings

AWAY_S = 5.0


def _ids():
    import random
    from datetime import date, timedelta

    rng, seen = random.Random(7), set()
    while True:
        value = make_id_number("410928", date(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 30)),
                               rng.randrange(1000))
        if value not in seen:
            seen.add(value)
            yield value


class Traffic:
    def __init__(self) -> None:
        self.answers: list[tuple[float, str, int, float]] = []  # (at, what, status, seconds)
        self.created = 0
        self.stop = asyncio.Event()

    def first_ok_after(self, what: str, t: float) -> float | None:
        times = [at for at, w, status, _ in self.answers if w == what and at > t and status < 300]
        return min(times) - t if times else None


async def _writer(client: httpx.AsyncClient, token: str, ids, traffic: Traffic) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while not traffic.stop.is_set():
        body = {"name": "王秀英", "id_number": next(ids), "county_code": "410928", "township": "城关镇",
                "village": "东街社区", "living_arrangement": "alone", "categories": [], "ability_level": 1}
        key = str(uuid.uuid4())
        while True:
            started = time.monotonic()
            try:
                response = await client.post("/v1/residents", json=body, headers={**headers, "Idempotency-Key": key})
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            traffic.answers.append((time.monotonic(), "register", status, time.monotonic() - started))
            if status == 201:
                traffic.created += 1
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.02)


async def _reader(client: httpx.AsyncClient, token: str, traffic: Traffic) -> None:
    while not traffic.stop.is_set():
        started = time.monotonic()
        try:
            status = (await client.get("/v1/aggregates/city", headers={"Authorization": f"Bearer {token}"})).status_code
        except httpx.HTTPError:
            status = 0
        traffic.answers.append((time.monotonic(), "dashboard", status, time.monotonic() - started))
        await asyncio.sleep(0.05)


async def _counts(url: str) -> tuple[int, int] | None:
    """(residents in the registry, residents folded by reporting), None while PostgreSQL is away."""
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=2)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return (await conn.fetchval("SELECT count(*) FROM registry.residents"),
                await conn.fetchval("SELECT count(*) FROM reporting.residents"))
    finally:
        await conn.close()


async def _measure(postgres: EmbeddedPostgres, ports: dict[str, int], runs: int) -> list[dict]:
    settings = PlatformSettings()
    county = issue_token(settings, "county", county="410928")
    viewer = issue_token(settings, "viewer")
    traffic, ids = Traffic(), _ids()
    results: list[dict] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['registry']}", timeout=60) as registry, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['reporting']}", timeout=60) as reporting:
        clients = [asyncio.create_task(_writer(registry, county, ids, traffic)) for _ in range(4)]
        clients.append(asyncio.create_task(_reader(reporting, viewer, traffic)))
        try:
            for run in range(runs):
                for outage in ("stopped", "killed"):
                    await asyncio.sleep(3.0)
                    away = time.monotonic()
                    await asyncio.to_thread(postgres.stop if outage == "stopped" else postgres.kill)
                    await asyncio.sleep(AWAY_S)
                    command = time.monotonic()
                    await asyncio.to_thread(postgres.start)
                    back = time.monotonic()
                    # Caught up: reporting holds every resident the registry held when PostgreSQL
                    # came back (written before the outage and during it, and then relayed).
                    registered = (await _counts(postgres.url))[0]
                    while (await _counts(postgres.url))[1] < registered:
                        await asyncio.sleep(0.05)
                    consistent = time.monotonic() - back
                    await asyncio.sleep(0.5)
                    during = [a for a in traffic.answers if away <= a[0] <= back]
                    results.append({
                        "run": run + 1, "outage": outage, "start_s": back - command,
                        "registry_s": traffic.first_ok_after("register", back),
                        "dashboard_s": traffic.first_ok_after("dashboard", back), "consistent_s": consistent,
                        "statuses_away": sorted({a[2] for a in during}),
                        "slowest_away_s": max((a[3] for a in during), default=0.0),
                    })
                    print(time.strftime("%H:%M:%S"), results[-1], flush=True)
        finally:
            traffic.stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
    print(f"residents registered: {traffic.created}; answers other than 2xx/503: "
          f"{sum(1 for a in traffic.answers if a[2] >= 300 and a[2] != 503)}")
    return results


def main(runs: int = 3) -> dict:
    folder = STATE / "bench-pg-recovery"
    shutil.rmtree(folder, ignore_errors=True)
    postgres = EmbeddedPostgres(folder / "pgdata").start()
    broker = EmbeddedBroker(free_port(), STATE / "logs" / "bench-pg-recovery-broker.log").start()
    asyncio.run(ensure_database(postgres.url))
    ports = {"registry": free_port(), "reporting": free_port()}
    env = {**os.environ, "DATABASE_URL": postgres.url, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
           "REGISTRY_PORT": str(ports["registry"]), "REPORTING_PORT": str(ports["reporting"]),
           "REGISTRY_WORKERS": "1", "LOG_JSON": "false", "ELDERCARE_STATE_DIR": str(folder)}
    processes = []
    try:
        for service in ("registry", "reporting"):
            log = (STATE / "logs" / f"bench-pg-recovery-{service}.log").open("ab")
            processes.append(subprocess.Popen([sys.executable, "-m", "eldercare.cli", "serve", service], env=env,
                                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            log.close()
            wait_for_port(ports[service], timeout=120)
        results = asyncio.run(_measure(postgres, ports, runs))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print("\n| outage | PostgreSQL start (s) | registry serving (s) | dashboard serving (s) | reporting caught up (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    medians: dict[str, dict] = {}
    for outage in ("stopped", "killed"):
        rows = [r for r in results if r["outage"] == outage]
        med = {k: statistics.median(r[k] for r in rows if r[k] is not None)
               for k in ("start_s", "registry_s", "dashboard_s", "consistent_s")}
        print(f"| {outage} | {med['start_s']:.2f} | {med['registry_s']:.2f} | {med['dashboard_s']:.2f} | "
              f"{med['consistent_s']:.2f} |")
        medians[outage] = med
    return medians
