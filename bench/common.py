"""What every benchmark needs: a database and a broker, embedded unless the environment names them."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from eldercare.infra import EmbeddedBroker, EmbeddedPostgres, free_port
from shared.db import asyncpg_dsn, database_name, with_database

STATE = Path(os.environ.get("ELDERCARE_STATE_DIR", ".state")).resolve()


@contextmanager
def bench_infrastructure(database: str | None = None, state: Path | None = None, broker_per_part: bool = False):
    """(database_url, bootstrap): a fresh database and, unless KAFKA_BOOTSTRAP_SERVERS is set, a
    private broker (so a benchmark never disturbs a running platform). The database is named after
    the process, so benchmarks run side by side never drop each other's data.

    Unless DATABASE_URL is set, PostgreSQL is the embedded one under `state` (default STATE), started
    here if it is not running and then stopped on the way out: a command that measures several parts
    opens this once for all of them (`eldercare bench registry --part all`) and gives each part a
    fresh database with `fresh_database`, rather than stopping and starting the server in between.

    With `broker_per_part` no broker is started here (bootstrap is None unless the environment names
    one): the caller gives each part its own with `part_broker`."""
    database = database or f"eldercare_bench_{os.getpid()}"
    state = Path(state).resolve() if state is not None else STATE
    _ephemeral_secret()
    postgres = None
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        server_url = with_database(server_url, "postgres")
    else:
        postgres = EmbeddedPostgres(state / "pgdata").start()
        server_url = postgres.url_for("postgres")
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap and not broker_per_part:
        broker = EmbeddedBroker(free_port(), state / "logs" / "bench-broker.log").start()
        bootstrap = broker.bootstrap
    asyncio.run(_recreate(server_url, database))
    try:
        yield with_database(server_url, database), bootstrap
    finally:
        asyncio.run(_drop(server_url, database))
        if broker is not None:
            broker.stop()
        if postgres is not None and postgres.started_here:
            postgres.stop()


@contextmanager
def part_broker(bootstrap: str | None, state: Path | None = None):
    """The broker one part of a benchmark measures on: `bootstrap` when the environment named one,
    else an embedded broker of the part's own, stopped afterwards. The embedded broker keeps every
    record in memory and never deletes one, so a part run after the import's millions of events
    would measure a broker carrying them (reporting's p99 went from 0.3 s alone to 3 s there)."""
    if bootstrap:
        yield bootstrap
        return
    state = Path(state).resolve() if state is not None else STATE
    broker = EmbeddedBroker(free_port(), state / "logs" / "bench-broker.log").start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def fresh_database(url: str) -> None:
    """Drop and create again the database `url` names (one `bench_infrastructure` gave): the next
    part of a benchmark starts from an empty database on the same, still running server."""
    asyncio.run(_recreate(with_database(url, "postgres"), database_name(url)))


async def _recreate(server_url: str, database: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def _drop(server_url: str, database: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


async def raw_consume(bootstrap: str, topic: str, total: int, partitions: int, *, max_records: int = 5000,
                      timeout_ms: int = 200, **consumer_options) -> float:
    """Records/s of a bare aiokafka `getmany` loop reading `total` records of `topic` from the start:
    the raw limit a consumer benchmark compares with."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                **consumer_options)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        got, started = 0, time.perf_counter()
        while got < total:
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            got += sum(len(v) for v in batch.values())
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _ephemeral_secret() -> None:
    """A benchmark runs its own services: unless JWT_SECRET is given, they and the benchmark's
    tokens share a random secret that lives only as long as this process (and its children)."""
    import secrets

    from shared.settings import get_settings

    os.environ.setdefault("JWT_SECRET", secrets.token_urlsafe(48))
    get_settings.cache_clear()


class ServiceProcess:
    """One platform service as a real process (`eldercare serve <name>`) for a benchmark."""

    def __init__(self, name: str, url: str, bootstrap: str, port: int, log_dir: Path = STATE / "logs",
                 extra_env: dict | None = None) -> None:
        import subprocess
        import sys

        env = {**os.environ, "DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               f"{name.upper()}_PORT": str(port), "LOG_LEVEL": "WARNING", **(extra_env or {})}
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name, self.port = name, port
        self.base_url = f"http://127.0.0.1:{port}"
        with (log_dir / f"bench-{name}.log").open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "eldercare.cli", "serve", name], env=env,
                                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 120.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready")

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except Exception:  # noqa: BLE001
                self.process.kill()


def summarize_latencies(samples_ms: list[float]) -> dict:
    return {"n": len(samples_ms), "p50_ms": round(percentile(samples_ms, 50), 2),
            "p95_ms": round(percentile(samples_ms, 95), 2), "p99_ms": round(percentile(samples_ms, 99), 2),
            "max_ms": round(max(samples_ms), 2) if samples_ms else None}


async def open_loop(rate: float, seconds: float, make_request) -> tuple[list[float], int]:
    """Send requests at a fixed rate regardless of answers (latency includes any queueing), the way
    real callers arrive; returns latencies in ms and the error count."""
    import time

    latencies: list[float] = []
    errors = 0
    tasks = []
    interval = 1.0 / rate
    start = time.perf_counter()
    total = int(rate * seconds)

    async def one(scheduled: float) -> None:
        nonlocal errors
        try:
            ok = await make_request()
            if not ok:
                errors += 1
        except Exception:  # noqa: BLE001 - counted, not raised
            errors += 1
        latencies.append((time.perf_counter() - scheduled) * 1000)

    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return latencies, errors
