"""What every benchmark needs: a database and a broker, embedded unless the environment names them."""

from __future__ import annotations

import asyncio
import os
import statistics
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from eldercare.infra import EmbeddedBroker, EmbeddedPostgres, free_port
from shared.db import asyncpg_dsn, with_database

STATE = Path(os.environ.get("ELDERCARE_STATE_DIR", ".state")).resolve()


@contextmanager
def bench_infrastructure(database: str = "eldercare_bench"):
    """(database_url, bootstrap): a fresh database and, unless KAFKA_BOOTSTRAP_SERVERS is set, a
    private broker (so a benchmark never disturbs a running platform)."""
    postgres = None
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        server_url = with_database(server_url, "postgres")
    else:
        postgres = EmbeddedPostgres(STATE / "pgdata").start()
        server_url = postgres.url_for("postgres")
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = EmbeddedBroker(free_port(), STATE / "logs" / "bench-broker.log").start()
        bootstrap = broker.bootstrap
    asyncio.run(_recreate(server_url, database))
    try:
        yield with_database(server_url, database), bootstrap
    finally:
        if broker is not None:
            broker.stop()
        if postgres is not None and postgres.started_here:
            postgres.stop()


async def _recreate(server_url: str, database: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
