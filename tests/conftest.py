"""Real PostgreSQL and a real broker for the whole suite, started by the project itself.

PostgreSQL: DATABASE_URL's server if set, else the embedded one under `.state/pgdata` (shared with
`make up`, in its own `eldercare_test` database). Broker: KAFKA_BOOTSTRAP_SERVERS if set, else a
private Tansu on a free port; tests that restart a broker always start their own."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from eldercare.infra import EmbeddedBroker, EmbeddedPostgres, free_port
from shared.db import asyncpg_dsn, with_database

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("ELDERCARE_STATE_DIR", ROOT / ".state")).resolve()
TEST_DATABASE = "eldercare_test"


@pytest.fixture(scope="session")
def pg_server_url():
    """A URL on the test PostgreSQL server (database `postgres`)."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield with_database(external, "postgres")
        return
    server = EmbeddedPostgres(STATE / "pgdata").start()
    yield server.url_for("postgres")
    if server.started_here:
        server.stop()


@pytest.fixture(scope="session")
def database_url(pg_server_url):
    """A fresh `eldercare_test` database for this session."""
    import asyncio

    import asyncpg

    async def recreate() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(pg_server_url))
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                TEST_DATABASE,
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}"')
            await conn.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    return with_database(pg_server_url, TEST_DATABASE)


@pytest.fixture(scope="session")
def bootstrap():
    """The suite's broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = EmbeddedBroker(free_port(), STATE / "logs" / "test-broker.log").start()
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def private_broker():
    """A broker this test may stop, kill and restart (empty) at will."""
    broker = EmbeddedBroker(free_port(), STATE / "logs" / "test-private-broker.log").start()
    yield broker
    broker.stop()


@pytest.fixture
def unique() -> str:
    """A short id so tests never collide on one database and broker."""
    return uuid.uuid4().hex[:10]
