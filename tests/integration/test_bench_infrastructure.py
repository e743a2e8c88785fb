"""bench/common.py's `bench_infrastructure`: what a benchmark command opens and closes, part after part
in one process (`eldercare bench registry --part all` measured the import, left, then came back for the
reads and failed with FileNotFoundError on the second server start). Lifetimes only, nothing timed."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import uuid

import asyncpg
import pytest

from bench.common import bench_infrastructure, fresh_database, part_broker
from bench.registry_api import fill_registry, sample_residents
from eldercare.infra import EmbeddedPostgres
from shared.db import asyncpg_dsn, with_database
from tests.conftest import STATE
from tests.integration.support import scratch_database


@pytest.fixture
def bench_state(monkeypatch):
    """A state folder of the test's own with no DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS: the helper
    starts (and stops) its own embedded PostgreSQL and broker there; the suite's are never touched."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("JWT_SECRET", secrets.token_urlsafe(48))
    folder = STATE / "test-bench" / uuid.uuid4().hex[:8]
    try:
        yield folder
    finally:
        server = EmbeddedPostgres(folder / "pgdata")
        if server.pgdata.exists() and server.is_running():
            server.stop(mode="immediate")
        shutil.rmtree(folder, ignore_errors=True)


async def _databases(url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(with_database(url, "postgres")))
    try:
        return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()


async def _write_and_count(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS part (n int)")
        await conn.execute("INSERT INTO part VALUES (1)")
        return await conn.fetchval("SELECT count(*) FROM part")
    finally:
        await conn.close()


def _listening(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def test_two_parts_in_one_process_each_get_a_server_a_broker_and_an_empty_database(bench_state):
    pgdata = EmbeddedPostgres(bench_state / "pgdata")
    with bench_infrastructure("bench_part_one", state=bench_state) as (url, bootstrap):
        assert asyncio.run(_write_and_count(url)) == 1
        assert _listening(bootstrap)
        first_bootstrap = bootstrap
    # Started here, so stopped on the way out: the server and the broker are gone.
    assert not pgdata.is_running()
    assert not _listening(first_bootstrap)

    # The next part in the same process starts them again and reaches its database.
    with bench_infrastructure("bench_part_two", state=bench_state) as (url, bootstrap):
        assert asyncio.run(_write_and_count(url)) == 1
        assert _listening(bootstrap)
        databases = asyncio.run(_databases(url))
        assert "bench_part_two" in databases and "bench_part_one" not in databases
    assert not pgdata.is_running()


def test_fresh_database_empties_the_database_and_keeps_the_server(bench_state):
    with bench_infrastructure("bench_fresh", state=bench_state) as (url, _bootstrap):
        assert asyncio.run(_write_and_count(url)) == 1
        assert asyncio.run(_write_and_count(url)) == 2
        fresh_database(url)
        # The same server, still running: the table is gone, so the count starts again.
        assert asyncio.run(_write_and_count(url)) == 1


def test_each_part_of_bench_all_gets_a_broker_of_its_own(bench_state):
    """The embedded broker never forgets a record, so `bench all` gives each part a fresh one: no
    broker from the infrastructure, one per part, gone when the part ends; a named broker is used as is."""
    with bench_infrastructure("bench_per_part", state=bench_state, broker_per_part=True) as (url, named):
        assert named is None and asyncio.run(_write_and_count(url)) == 1
        with part_broker(named, state=bench_state) as first:
            assert _listening(first)
        assert not _listening(first)
        with part_broker(named, state=bench_state) as second:
            assert _listening(second)
        assert not _listening(second)
        with part_broker("127.0.0.1:1", state=bench_state) as given:
            assert given == "127.0.0.1:1"


async def test_the_read_sample_of_a_small_registry_is_never_empty(pg_server_url):
    """CI failed `bench all --quick` with IndexError: the 5 % page sample of the quick bench's 3,000
    residents picked no page. Sampled again and again, it always holds residents to read back."""
    async with scratch_database(pg_server_url, f"eldercare_bench_sample_{uuid.uuid4().hex[:8]}") as url:
        await fill_registry(url, 3_000)
        sizes = [len(await sample_residents(url)) for _ in range(40)]
    assert min(sizes) >= 1_000, sizes
