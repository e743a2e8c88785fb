"""History stays replayable: after the broker lost its log and the outbox let go of the events
(retention), the registry re-publishes its current state and reporting rebuilds the same figures.
Each test runs its own registry and reporting, in a database of their own, on a private broker."""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from types import SimpleNamespace

import asyncpg
import httpx
import pytest

from eldercare.infra import BrokerSupervisor, free_port
from shared.db import asyncpg_dsn, with_database
from shared.messaging.topics import all_topic_names
from tests.conftest import fresh_id_number, token_for

COUNTIES = ("410928", "410922")


async def _serve(app, port: int):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    return server, task


@pytest.fixture
async def platform(pg_server_url, private_broker, unique):
    """Registry and reporting with their real lifespans (migrations, relays, consumers) behind real
    HTTP servers (the replay command talks HTTP, reporting asks the registry for its counts)."""
    from services.registry.app import create_app as create_registry
    from services.reporting.app import create_app as create_reporting
    from shared.settings import PlatformSettings

    name = f"eldercare_history_{unique}"
    admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    settings = PlatformSettings(database_url=with_database(pg_server_url, name),
                                kafka_bootstrap_servers=private_broker.bootstrap, log_json=False,
                                relay_check_interval_s=0.5, kafka_partitions=4,
                                registry_port=free_port(), reporting_port=free_port(),
                                jwt_secret=secrets.token_urlsafe(48))
    registry_app, reporting_app = create_registry(settings), create_reporting(settings)
    try:
        async with registry_app.router.lifespan_context(registry_app), \
                reporting_app.router.lifespan_context(reporting_app):
            servers = [await _serve(registry_app, settings.registry_port),
                       await _serve(reporting_app, settings.reporting_port)]
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.registry_port}", timeout=60) as reg, \
                        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.reporting_port}", timeout=60) as rep:
                    yield SimpleNamespace(settings=settings, registry=reg, reporting=rep, broker=private_broker,
                                          registry_runtime=registry_app.state.runtime,
                                          reporting_runtime=reporting_app.state.runtime,
                                          city=token_for(settings, "city"))
            finally:
                for server, task in servers:
                    server.should_exit = True
                    await task
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _event(type_: str, data: dict, county: str, subject: str | None = None) -> dict:
    e = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}", "type": type_,
         "countycode": county, "data": data}
    if subject:
        e["subject"] = subject
    return e


async def seed_city(p, residents: int = 120) -> list[str]:
    """Residents in two counties, then assessments, deaths, family beds, facility reports (one
    facility reported twice) and training records: every kind of figure reporting keeps."""
    rng = random.Random(7)
    sem = asyncio.Semaphore(8)

    async def register(i: int) -> str:
        county = COUNTIES[i % 2]
        async with sem:
            r = await p.registry.post("/v1/residents", headers=p.city, json={
                "name": f"居民{i}", "id_number": fresh_id_number(), "county_code": county, "township": "城关镇",
                "village": "东街社区", "living_arrangement": rng.choice(["alone", "empty_nest", "with_family"]),
                "categories": rng.sample(["dementia", "low_income", "severe_disability"], rng.randrange(3))})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    ids = list(await asyncio.gather(*(register(i) for i in range(residents))))
    for rid in ids[:20]:
        r = await p.registry.post(f"/v1/residents/{rid}/assessments", headers=p.city, json={
            "assessor": "李医生", "assessed_on": "2026-06-10", "reason": "routine", "level": rng.randrange(5)})
        assert r.status_code == 201, r.text
    for rid in ids[20:26]:
        assert (await p.registry.post(f"/v1/residents/{rid}/death", headers=p.city,
                                      json={"date_of_death": "2026-11-02"})).status_code == 200
    events = [_event("eldercare.county.family_bed.established.v1", {}, COUNTIES[i % 2], ids[i]) for i in range(30, 40)]
    for county in COUNTIES:
        for n, beds in enumerate((20, 35)):
            events.append(_event("eldercare.county.facility.reported.v1", {
                "facility_id": f"F-{county}-1", "facility_type": "daycare_center", "name": "日间照料中心",
                "beds": beds, "nursing_beds": 10 + n, "occupied": 9}, county) | {"time": f"2026-11-0{n + 1}T08:00:00Z"})
        events += [_event("eldercare.county.training.recorded.v1", {"course": "护理员培训", "trainees": t}, county)
                   for t in (12, 30)]
    posted = await p.registry.post("/v1/events", headers=p.city, json=events)
    assert posted.status_code == 200, posted.text
    assert all(v["status"] == "accepted" for v in posted.json()["results"]), posted.text
    return ids


async def settled(p, timeout: float = 90) -> None:
    """The registry's outbox drained and reporting with nothing left to read, twice in a row."""
    calm = 0
    deadline = asyncio.get_running_loop().time() + timeout
    while calm < 2:
        assert asyncio.get_running_loop().time() < deadline, "reporting did not catch up"
        async with p.registry_runtime.db.connection() as conn:
            pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        lag = (await p.reporting.get("/v1/admin/rebuild", headers=p.city)).json()["lag"]
        calm = calm + 1 if pending == 0 and lag == 0 else 0
        await asyncio.sleep(0.5)


async def aggregates(p) -> dict:
    response = await p.reporting.get("/v1/aggregates", headers=p.city)
    assert response.status_code == 200, response.text
    return response.json()


async def lose_history(p) -> None:
    """What a week and a broker restart do: the outbox pruned (its rows older than the retention)
    and the broker's memory log gone."""
    async with p.registry_runtime.db.connection() as conn:
        await conn.execute("DELETE FROM outbox WHERE published_at IS NOT NULL")
    p.broker.kill()
    # Started again empty, with its topics, as the launcher's supervisor does (nothing auto-creates them).
    supervisor = BrokerSupervisor(p.broker, all_topic_names(), p.settings.kafka_partitions)
    assert await asyncio.to_thread(supervisor.check) == "restarted"


async def projections_agree(p) -> list:
    """Residents whose counted state in reporting's projection differs from the registry's (same
    database). Versions are not compared: an assessment or a death moves reporting's state without a
    new snapshot, so its version stays at the last snapshot's."""
    async with p.registry_runtime.db.connection() as conn:
        return await conn.fetch(
            "SELECT r.id, r.ability_level, r.status, r.family_bed, r.living_arrangement, p.ability_level AS p_level, "
            "p.status AS p_status, p.family_bed AS p_bed, p.living_arrangement AS p_living "
            "FROM registry.residents r FULL JOIN reporting.residents p ON p.resident_id = r.id "
            "WHERE p.resident_id IS NULL OR r.id IS NULL OR r.county_code <> p.county_code "
            "OR r.ability_level IS DISTINCT FROM p.ability_level OR r.status <> p.status "
            "OR r.family_bed <> p.family_bed OR r.living_arrangement <> p.living_arrangement "
            "OR (SELECT array_agg(c ORDER BY c) FROM unnest(r.categories) c) "
            "IS DISTINCT FROM (SELECT array_agg(c ORDER BY c) FROM unnest(p.categories) c)")


async def test_a_rebuild_after_the_broker_and_the_outbox_lost_the_history_gives_the_same_figures(platform):
    from eldercare.replay import diff, figures, replay_reporting

    p = platform
    await seed_city(p)
    await settled(p)
    before = await aggregates(p)
    assert before["scopes"]["city"]["residents"]["registered"] == 120
    assert before["scopes"]["city"]["training"] == {"trainees": 84, "sessions": 4}
    assert before["scopes"]["city"]["facilities"]["beds"] == 70 and before["scopes"]["city"]["family_beds"] == 10

    await lose_history(p)
    ok = await asyncio.to_thread(replay_reporting, p.settings, None, 180)
    after = await aggregates(p)
    assert diff(figures(before), figures(after)) == []
    assert ok is True
    async with p.registry_runtime.db.connection() as conn:
        job = await conn.fetchrow("SELECT * FROM snapshot_jobs ORDER BY created_at DESC LIMIT 1")
    assert job is not None and job["status"] == "succeeded" and job["emitted"] == 120 + 4 + 2
    assert await projections_agree(p) == []


async def test_a_stopped_republish_resumes_from_its_persisted_position_and_counts_nothing_twice(platform):
    from eldercare.replay import figures
    from services.registry.republish import jobs_of, on_start

    p = platform
    await seed_city(p, residents=60)
    await settled(p)
    before = await aggregates(p)
    assert (await p.registry.post("/v1/admin/republish", headers=token_for(p.settings, "viewer"))).status_code == 403
    bad = await p.registry.post("/v1/admin/republish", headers=p.city, json={"sources": ["residents", "orders"]})
    assert bad.status_code == 400 and bad.json()["field"] == "sources.1"

    # Reporting's inbox has long forgotten the first deliveries (pruned after its retention): the
    # training records sent again with their first ids must still count once.
    async with p.reporting_runtime.db.connection() as conn:
        await conn.execute("DELETE FROM inbox")
    jobs = jobs_of(p.registry_runtime)
    async with p.registry_runtime.db.transaction() as conn:
        job = await jobs.create(conn, "test", None, chunk_size=7)
    # Stopped midway (as a process stopping would leave it): three chunks done, the rest not.
    assert await jobs.run(job["id"], max_chunks=3) == "running"
    status = (await p.registry.get(f"/v1/admin/republish/{job['id']}", headers=p.city)).json()
    assert status["status"] == "running" and status["emitted"] == 21 and status["source"] == "residents"
    position = status["position"]
    async with p.registry_runtime.db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM residents WHERE id <= $1::uuid", position) == 21

    await on_start(p.registry_runtime)  # a restart resumes what was left running
    task = jobs.tasks.get(job["id"])
    assert task is not None
    assert await asyncio.wait_for(task, 60) == "succeeded"
    final = (await p.registry.get(f"/v1/admin/republish/{job['id']}", headers=p.city)).json()
    assert final["status"] == "succeeded" and final["emitted"] == final["total"] == 60 + 4 + 2
    assert final["chunks"] > 3 and final["progress"] == 1.0
    async with p.registry_runtime.db.connection() as conn:
        per_resident = await conn.fetch(
            "SELECT key, count(*) AS n FROM outbox WHERE convert_from(payload, 'UTF8')::jsonb #>> '{data,job_id}' = $1 "
            "GROUP BY key", str(job["id"]))
    assert len(per_resident) == 60 and all(r["n"] == 1 for r in per_resident)
    await settled(p)
    assert figures(before) == figures(await aggregates(p))  # the same events once more change nothing
    assert await projections_agree(p) == []


async def test_live_updates_interleaved_with_a_republish_end_with_reporting_equal_to_the_registry(platform):
    p = platform
    ids = await seed_city(p, residents=150)
    await settled(p)
    await lose_history(p)
    await asyncio.sleep(1.0)  # the relay notices the loss (and has nothing left to replay)
    from services.registry.republish import jobs_of

    rebuilt = await p.reporting.post("/v1/admin/rebuild", headers=p.city)
    assert rebuilt.status_code == 200
    jobs_of(p.registry_runtime).pause_s = 0.2  # a slow walk, so live changes land on every side of it
    started = await p.registry.post("/v1/admin/republish", headers=p.city, json={"chunk_size": 3})
    assert started.status_code == 202, started.text
    job_url = started.headers["location"]

    rng = random.Random(11)
    live = {"updates": 0}

    async def keep_changing() -> None:
        while (await p.registry.get(job_url, headers=p.city)).json()["status"] == "running":
            rid = rng.choice(ids[40:])
            current = await p.registry.get(f"/v1/residents/{rid}", headers=p.city)
            if current.json()["status"] != "active":
                continue
            if rng.random() < 0.5:
                r = await p.registry.post(f"/v1/residents/{rid}/assessments", headers=p.city, json={
                    "assessor": "王医生", "assessed_on": "2026-11-20", "reason": "immediate", "level": rng.randrange(5)})
            else:
                r = await p.registry.patch(f"/v1/residents/{rid}", headers={**p.city, "If-Match": current.headers["etag"]},
                                           json={"living_arrangement": rng.choice(["alone", "with_family", "institution"]),
                                                 "family_bed": rng.random() < 0.5})
            assert r.status_code in (200, 201, 412), r.text
            live["updates"] += r.status_code != 412

    await asyncio.wait_for(asyncio.gather(keep_changing(), keep_changing()), 120)
    assert live["updates"] >= 10
    await settled(p)
    assert await projections_agree(p) == []
    consistency = (await p.reporting.get("/v1/consistency", headers=p.city)).json()
    assert consistency["consistent"] is True, consistency["differences"]



async def test_a_chunk_waits_for_a_change_in_flight_so_its_snapshot_comes_after_that_change(platform):
    # The race the row locks close: an assessment has written its event (lower outbox id) but not yet
    # committed when a chunk reads the resident. Read without waiting, the snapshot would carry the old
    # level after the assessment's event, and a rebuild from an emptied log (assessment ignored: no
    # state yet; then the snapshot) would keep the old level.
    from datetime import date

    from services.registry import handlers
    from services.registry.republish import jobs_of
    from shared.auth import Principal, Role

    p = platform
    registered = await p.registry.post("/v1/residents", headers=p.city, json={
        "name": "赵桂英", "id_number": fresh_id_number(), "county_code": "410928", "township": "城关镇",
        "village": "东街社区", "living_arrangement": "alone", "ability_level": 1})
    rid = registered.json()["id"]
    jobs = jobs_of(p.registry_runtime)
    async with p.registry_runtime.db.transaction() as conn:
        job = await jobs.create(conn, "test", ["residents"], chunk_size=10)
    pool = p.registry_runtime.db.pool
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        updated, _ = await handlers.record_assessment(
            conn, Principal(subject="test", role=Role.CITY), uuid.UUID(rid),
            handlers.AssessmentCommand(assessor="李医生", assessed_on=date(2026, 11, 30), reason="immediate", level=4))
        chunk = asyncio.create_task(jobs.run(job["id"], max_chunks=1))
        await asyncio.sleep(1.0)
        assert not chunk.done(), "the chunk read a row whose change was still in flight"
        await tx.commit()
    assert await asyncio.wait_for(chunk, 30) in ("running", "succeeded")
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, convert_from(payload, 'UTF8')::jsonb AS e FROM outbox WHERE key = $1 "
                                "ORDER BY id", rid)
    assessed = next(r for r in rows if r["e"]["type"] == "eldercare.resident.assessed.v1")
    snap = next(r for r in rows if r["e"]["type"] == "eldercare.resident.snapshot.v1")
    assert snap["id"] > assessed["id"]
    assert snap["e"]["data"]["resident"]["version"] == updated["version"]
    assert snap["e"]["data"]["resident"]["ability_level"] == 4
