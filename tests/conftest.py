"""Real PostgreSQL and a real broker for the whole suite, started by the project itself.

PostgreSQL: DATABASE_URL's server if set, else the embedded one under `.state/pgdata` (shared with
`make up`, in a database of its own per session). Broker: KAFKA_BOOTSTRAP_SERVERS if set, else a
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
# One database per test session: two sessions on one server (a developer and CI, or parallel
# helpers) never drop each other's data.
TEST_DATABASE = f"eldercare_test_{os.getpid()}"


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
    """A fresh database for this session, dropped at its end (with those of dead sessions)."""
    import asyncio

    import asyncpg
    import psutil

    async def recreate() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(pg_server_url))
        try:
            for row in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'eldercare_test_%'"):
                pid = row["datname"].rsplit("_", 1)[-1]
                if pid.isdigit() and not psutil.pid_exists(int(pid)):
                    await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(pg_server_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(recreate())
    yield with_database(pg_server_url, TEST_DATABASE)
    asyncio.run(drop())


# The partition count of the suite's platform topics (the `settings` fixture's KAFKA_PARTITIONS).
TEST_PARTITIONS = 4


@pytest.fixture(scope="session")
def bootstrap():
    """The suite's broker, with the platform's topics created as the launcher does (relays create none)."""
    import asyncio

    from shared.messaging.kafka import ensure_topics
    from shared.messaging.topics import all_topic_names

    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        asyncio.run(ensure_topics(external, all_topic_names(), TEST_PARTITIONS))
        yield external
        return
    broker = EmbeddedBroker(free_port(), STATE / "logs" / "test-broker.log").start()
    asyncio.run(ensure_topics(broker.bootstrap, all_topic_names(), TEST_PARTITIONS))
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def private_broker():
    """A broker this test may stop, kill and restart (empty) at will."""
    broker = EmbeddedBroker(free_port(), STATE / "logs" / "test-private-broker.log").start()
    yield broker
    broker.stop()


@pytest.fixture
def private_postgres():
    """A PostgreSQL server of the test's own (a fresh data folder under .state, not pytest's
    tmp dirs, which other sessions prune) that it may stop, kill and start again; the suite's
    shared server is never touched. Yields the EmbeddedPostgres (database `eldercare` created)."""
    import asyncio
    import shutil

    from shared.db import ensure_database

    folder = STATE / "test-pg" / uuid.uuid4().hex[:8]
    server = EmbeddedPostgres(folder / "pgdata").start()
    try:
        asyncio.run(ensure_database(server.url))
        yield server
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def unique() -> str:
    """A short id so tests never collide on one database and broker."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def settings(database_url, bootstrap):
    import secrets

    from shared.settings import PlatformSettings

    # The suite's own random secret: nothing written in the repository signs a token anywhere.
    return PlatformSettings(database_url=database_url, kafka_bootstrap_servers=bootstrap, log_json=False,
                            relay_check_interval_s=0.5, kafka_partitions=TEST_PARTITIONS,
                            jwt_secret=secrets.token_urlsafe(48))


def _ids():
    import itertools
    import random
    from datetime import date, timedelta

    from shared.idcard import make_id_number

    rng = random.Random()
    for _ in itertools.count():
        birth = date(1925, 1, 1) + timedelta(days=rng.randrange(0, 365 * 40))
        yield make_id_number(rng.choice(["410928", "410922", "410902", "370100"]), birth, rng.randrange(1000))


_ID_STREAM = _ids()
_SEEN: set[str] = set()


def fresh_id_number(county: str | None = None, birth_year: int | None = None) -> str:
    """A valid GB 11643 number no other test has used in this session (of that county and birth
    year when given)."""
    if county is not None or birth_year is not None:
        import random
        from datetime import date, timedelta

        from shared.idcard import make_id_number

        rng = random.Random()
        while True:
            birth = date(birth_year or 1940, 1, 1) + timedelta(days=rng.randrange(0, 365))
            value = make_id_number(county or "410928", birth, rng.randrange(1000))
            if value not in _SEEN:
                _SEEN.add(value)
                return value
    while True:
        value = next(_ID_STREAM)
        if value not in _SEEN:
            _SEEN.add(value)
            return value


@pytest.fixture(scope="session")
async def registry(settings):
    """The registry app with its real lifespan (migrations, relay) against the test database."""
    import httpx

    from services.registry.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            client.app = app
            yield client


@pytest.fixture(scope="session")
async def orders_bootstrap(settings):
    """A broker of the orders tests' own. They publish made-up residents on the residents topic
    (versions out of order, home locations) that the registry never registered; on the suite's
    broker reporting would fold them and its consistency check would rightly find them."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield settings.kafka_bootstrap_servers
        return
    from shared.messaging.kafka import ensure_topics
    from shared.messaging.topics import all_topic_names

    broker = EmbeddedBroker(free_port(), STATE / "logs" / "test-orders-broker.log").start()
    await ensure_topics(broker.bootstrap, all_topic_names(), settings.kafka_partitions)
    yield broker.bootstrap
    broker.stop()


@pytest.fixture(scope="session")
async def orders(settings, orders_bootstrap):
    """The orders app with its real lifespan (migrations, relay, consumer, scheduler), on the orders
    tests' own broker. A long scheduler interval: the tests drive the timers themselves with tick(now=...)."""
    import httpx

    from services.orders.app import create_app
    from services.orders.settings import OrdersSettings

    app = create_app(settings.model_copy(update={"kafka_bootstrap_servers": orders_bootstrap}),
                     OrdersSettings(scheduler_interval_s=3600))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orders") as client:
            client.app = app
            yield client


def token_for(settings, role: str, county: str | None = None, **kw) -> dict:
    from shared.auth import issue_token

    return {"Authorization": f"Bearer {issue_token(settings, role, county=county, **kw)}"}


@pytest.fixture(scope="session")
def city(settings) -> dict:
    """Authorization header of a city operator."""
    return token_for(settings, "city")


@pytest.fixture(scope="session")
def puyang(settings) -> dict:
    """Authorization header of Puyang County (410928)."""
    return token_for(settings, "county", "410928")


@pytest.fixture(scope="session")
def qingfeng(settings) -> dict:
    """Authorization header of Qingfeng County (410922)."""
    return token_for(settings, "county", "410922")
