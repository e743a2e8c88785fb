"""Reporting folds the registry's resident events and the county ingest stream into aggregates."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import quote

import httpx
import orjson
import pytest

from tests.conftest import fresh_id_number, token_for
from tests.integration.support import eventually, json_records


@pytest.fixture(scope="session")
async def reporting(settings, registry):
    from services.reporting.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting") as client:
            client.app = app
            yield client


async def settled(reporting, settings, registry=None) -> None:
    """Wait until earlier tests' events are folded: the registry's outbox drained and reporting's
    consumer with nothing left to read, twice in a row."""
    city = token_for(settings, "city")
    calm = 0

    async def calm_twice() -> bool:
        nonlocal calm
        pending = 0
        if registry is not None:
            runtime = registry.app.state.runtime
            async with runtime.db.connection() as conn:
                pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        lag = (await reporting.get("/v1/admin/rebuild", headers=city)).json()["lag"]
        calm = calm + 1 if pending == 0 and lag == 0 else 0
        return calm >= 2

    await eventually(calm_twice, timeout=90, interval=0.5, message="reporting caught up with earlier events")


async def county_view(reporting, headers, code="410928") -> dict:
    response = await reporting.get(f"/v1/aggregates/counties/{code}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def event(type_, data, subject=None, county="410928"):
    e = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}", "type": type_,
         "countycode": county, "data": data}
    if subject:
        e["subject"] = subject
    return e


async def test_resident_events_move_counters_and_facilities_and_training_are_counted(registry, reporting, settings):
    puyang = token_for(settings, "county", "410928")
    viewer = token_for(settings, "viewer")
    await settled(reporting, settings, registry)
    before = await county_view(reporting, viewer)
    response = await registry.post("/v1/residents", headers=puyang, json={
        "name": "周秀珍", "id_number": fresh_id_number(), "county_code": "410928", "township": "城关镇",
        "village": "东街社区", "living_arrangement": "alone", "categories": ["dementia"], "ability_level": 2})
    rid = response.json()["id"]
    facility = f"F-{uuid.uuid4().hex[:6]}"
    await registry.post("/v1/events", headers=puyang, json=[
        event("eldercare.county.facility.reported.v1", {"facility_id": facility, "facility_type": "daycare_center",
                                                        "name": "东街日间照料中心", "beds": 20, "nursing_beds": 12,
                                                        "occupied": 9}),
        event("eldercare.county.training.recorded.v1", {"course": "护理员培训", "trainees": 40})])

    async def changed():
        view = await county_view(reporting, viewer)
        return view if view["residents"]["active"] == before["residents"]["active"] + 1 and \
            view["training"]["trainees"] == before["training"]["trainees"] + 40 and \
            view["facilities"]["beds"] == before["facilities"]["beds"] + 20 else None

    after = await eventually(changed)
    assert after["residents"]["by_category"].get("dementia", 0) == before["residents"]["by_category"].get("dementia", 0) + 1
    assert after["residents"]["by_living_arrangement"]["alone"] == before["residents"]["by_living_arrangement"].get("alone", 0) + 1
    assert "周秀珍" not in orjson.dumps(after).decode()

    await registry.post(f"/v1/residents/{rid}/death", headers=puyang, json={"date_of_death": "2026-11-03"})

    async def died():
        view = await county_view(reporting, viewer)
        return view if view["residents"]["by_status"].get("deceased", 0) == before["residents"]["by_status"].get("deceased", 0) + 1 else None

    dead = await eventually(died)
    assert dead["residents"]["active"] == before["residents"]["active"]
    city = (await reporting.get("/v1/aggregates/city", headers=viewer)).json()
    assert city["residents"]["registered"] >= dead["residents"]["registered"]


async def test_unusable_events_go_to_the_dlq_and_never_skew_a_figure(reporting, settings):
    from aiokafka import AIOKafkaProducer

    from tests.integration.support import read_topic

    viewer = token_for(settings, "viewer")
    await settled(reporting, settings)
    before = (await reporting.get("/v1/aggregates/city", headers=viewer)).json()
    bad = [
        event("eldercare.county.facility.reported.v1", {"facility_id": "X", "facility_type": "township_home",
                                                        "name": "n", "beds": 5, "nursing_beds": 9, "occupied": 1}),
        event("eldercare.county.training.recorded.v1", {"course": "c", "trainees": -4}),
        event("eldercare.county.training.recorded.v1", {"course": "c", "trainees": 4}, county="999999"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for e in bad:
            await producer.send_and_wait("eldercare.registry.ingest.v1", orjson.dumps(e), key=b"county:x")
    finally:
        await producer.stop()
    dead = await read_topic(settings.kafka_bootstrap_servers, "eldercare.registry.ingest.v1.dlq", idle=4, timeout=60)
    ours = {e.get("id"): dict(r.headers)["dlq-reason"].decode() for r, e in json_records(dead)}
    assert {e["id"] for e in bad} <= set(ours)
    assert "nursing_beds cannot exceed beds" in ours[bad[0]["id"]]
    assert "trainees" in ours[bad[1]["id"]]
    assert "999999" in ours[bad[2]["id"]]
    after = (await reporting.get("/v1/aggregates/city", headers=viewer)).json()
    assert after["training"] == before["training"] and after["facilities"] == before["facilities"]


async def test_targets_apportion_family_bed_targets_to_add_up_to_the_city_target(reporting, settings):
    response = await reporting.get("/v1/targets", headers=token_for(settings, "viewer"))
    rows = response.json()["rows"]
    assert len(rows) == 10 and rows[-1]["county_code"] == "city"
    counties = rows[:-1]
    city = rows[-1]
    assert sum(r["indicators"]["family_beds"]["target"] for r in counties) == city["indicators"]["family_beds"]["target"]
    assert city["indicators"]["beds_per_1000"]["target"] == 39
    assert city["elderly_60plus"]["task_list"] == 666648


async def test_targets_are_the_task_lists_with_the_live_requirement_beside_them(reporting, settings):
    """Official targets from the document's own populations, whatever today's registry holds; the
    same rule on the registry's live 60+ count is a field of its own."""
    body = (await reporting.get("/v1/targets", headers=token_for(settings, "viewer"))).json()
    rows = {r["county_code"]: r for r in body["rows"]}
    puyang, city = rows["410928"]["indicators"], rows["city"]["indicators"]
    assert puyang["family_beds"]["target"] == 1284 and city["family_beds"]["target"] == 4800
    elderly = {c: r["elderly_60plus"]["registry"] for c, r in rows.items() if c != "city"}
    live_city = round(sum(elderly.values()) * 72 / 10000)
    assert city["family_beds"]["live_requirement"] == live_city
    assert sum(rows[c]["indicators"]["family_beds"]["live_requirement"] for c in elderly) == live_city
    assert city["beds"]["target"] == 25999 and city["beds"]["live_requirement"] == round(sum(elderly.values()) * 0.039)
    # coverage against the task list's own denominators
    assert city["facilities_happiness_home"]["target"] == 2867
    assert city["facilities_happiness_home"]["task_list_built"] == 595
    assert city["facilities_street_center"]["target"] == 19 and city["facilities_daycare_center"]["target"] == 295
    assert city["facilities_county_special_care"]["target"] == 9
    assert city["facilities_township_home"]["target"] == 75 and city["facilities_township_home"]["task_2022"] == 2
    for ind in (puyang["family_beds"], city["facilities_happiness_home"]):
        assert ind["progress"] == (round(ind["actual"] / ind["target"], 4) if ind["actual"] is not None else None)
    heard = [rows[c]["indicators"]["smart_platform"]["last_heard_at"] for c in elderly]
    assert city["smart_platform"]["last_heard_at"] == max((h for h in heard if h), default=None)
    assert "nursing_bed_share_special_care" in city and "occupancy" in city


async def test_a_county_platform_is_live_only_if_it_posted_in_the_last_24_hours(registry, reporting, settings):
    runtime = reporting.app.state.runtime
    viewer = token_for(settings, "viewer")
    await settled(reporting, settings, registry)
    async with runtime.db.transaction() as conn:
        saved = await conn.fetch("SELECT * FROM county_activity")
        await conn.execute("DELETE FROM county_activity")
        await conn.execute("INSERT INTO county_activity (county_code, events, last_event_at) VALUES "
                           "('410928', 1, now() - interval '25 hours'), ('410922', 1, now() - interval '1 hour')")
    try:
        rows = {r["county_code"]: r for r in (await reporting.get("/v1/targets", headers=viewer)).json()["rows"]}
    finally:
        async with runtime.db.transaction() as conn:
            await conn.execute("DELETE FROM county_activity")
            await conn.executemany("INSERT INTO county_activity (county_code, events, last_event_at) VALUES ($1, $2, $3) "
                                   "ON CONFLICT (county_code) DO UPDATE SET last_event_at = EXCLUDED.last_event_at",
                                   [(r["county_code"], r["events"], r["last_event_at"]) for r in saved])
    assert rows["410928"]["indicators"]["smart_platform"]["actual"] == 0  # heard once, a day ago: not live
    assert rows["410928"]["indicators"]["smart_platform"]["last_heard_at"] is not None
    assert rows["410922"]["indicators"]["smart_platform"]["actual"] == 1
    assert rows["410923"]["indicators"]["smart_platform"]["last_heard_at"] is None
    assert rows["city"]["indicators"]["smart_platform"]["actual"] == 1


async def test_exports_have_chinese_headers(reporting, settings):
    viewer = token_for(settings, "viewer")
    csv_response = await reporting.get("/v1/exports/targets.csv", headers=viewer)
    text = csv_response.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("县区代码,县区,60岁以上老年人口")
    assert "濮阳县" in text and "濮阳市" in text
    xlsx = await reporting.get("/v1/exports/targets.xlsx", headers=viewer)
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


async def test_the_workbook_lays_out_the_task_list_as_the_document_does(reporting, settings):
    import io

    import openpyxl

    viewer = token_for(settings, "viewer")
    targets = {r["county_code"]: r for r in (await reporting.get("/v1/targets", headers=viewer)).json()["rows"]}
    xlsx = await reporting.get("/v1/exports/targets.xlsx", headers=viewer)
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    groups = [g for g in rows[0] if g is not None]
    assert groups[4:] == ["养老床位", "县级特困供养服务机构", "街道综合养老服务中心", "社区日间照料中心",
                          "乡镇敬老院（提升改造）", "村级养老服务设施（覆盖行政村）", "养老护理人员培训（人次）",
                          "智慧养老平台（24小时内上报）", "家庭养老床位"]
    columns = {}
    group = None
    for i, (g, sub) in enumerate(zip(rows[0], rows[1])):
        group = g if g is not None else group
        columns[(group, sub)] = i
    data = rows[2:]
    assert [r[1] for r in data] == ["濮阳市", *[targets[c]["name_zh"] for c in targets if c != "city"]]
    for row in data:
        code = "city" if row[0] == "410900" else row[0]
        ind = targets[code]["indicators"]
        for g, key in [("养老床位", "beds"), ("村级养老服务设施（覆盖行政村）", "facilities_happiness_home"),
                       ("家庭养老床位", "family_beds"), ("社区日间照料中心", "facilities_daycare_center")]:
            assert row[columns[(g, "目标")]] == ind[key]["target"]
            assert row[columns[(g, "已建")]] == ind[key]["actual"]
            assert row[columns[(g, "完成率")]] == ind[key]["progress"]
        assert row[columns[("家庭养老床位", "按现登记人口需求")]] == ind["family_beds"]["live_requirement"]
        assert row[columns[("乡镇敬老院（提升改造）", "今年任务")]] == ind["facilities_township_home"]["task_2022"]
    city = data[0]
    assert city[columns[("家庭养老床位", "目标")]] == 4800
    assert city[columns[("村级养老服务设施（覆盖行政村）", "目标")]] == 2867
    assert data[1][columns[("家庭养老床位", "目标")]] == 1284


async def test_aggregates_need_a_token_and_a_reader_role(reporting, settings):
    assert (await reporting.get("/v1/aggregates/city")).status_code == 401
    caregiver = token_for(settings, "caregiver", caregiver_id="cg-1")
    assert (await reporting.get("/v1/aggregates/city", headers=caregiver)).status_code == 403
    assert (await reporting.get("/v1/aggregates/counties/999999", headers=token_for(settings, "viewer"))).status_code == 404


async def test_consistency_agrees_with_the_registry_once_events_have_arrived(registry, reporting, settings):
    reporting.app.state.runtime.state["registry_transport"] = httpx.ASGITransport(app=registry.app)
    city = token_for(settings, "city")

    async def consistent():
        body = (await reporting.get("/v1/consistency", headers=city)).json()
        return body if body["consistent"] else None

    body = await eventually(consistent, timeout=60)
    assert body["difference_count"] == 0


class LiveWriter:
    """Registers residents and sets up their family beds as fast as the registry takes them (the
    issue's case: a live city setting up beds while the consistency check runs)."""

    def __init__(self, registry, settings, writers: int = 4) -> None:
        self.registry, self.writers, self.done, self.done_facility = registry, writers, 0, 0
        self.puyang = token_for(settings, "county", "410928")
        self.tasks: list[asyncio.Task] = []

    async def _loop(self) -> None:
        base = {"name": "孙玉兰", "county_code": "410928", "township": "城关镇", "village": "东街社区",
                "living_arrangement": "alone"}
        while True:
            created = await self.registry.post("/v1/residents", headers=self.puyang,
                                               json=base | {"id_number": fresh_id_number()})
            assert created.status_code == 201, created.text
            # and the ingest-derived figures: a facility's occupancy changes, a training is recorded
            self.done_facility = (self.done_facility + 1) % 5
            posted = await self.registry.post("/v1/events", headers=self.puyang, json=[
                event("eldercare.county.family_bed.established.v1", {}, subject=created.json()["id"]),
                event("eldercare.county.facility.reported.v1", {
                    "facility_id": f"live-writer-{self.done_facility}", "facility_type": "daycare_center",
                    "name": "日间照料中心", "beds": 40, "nursing_beds": 20, "occupied": self.done % 40}),
                event("eldercare.county.training.recorded.v1", {"course": "失能照护", "trainees": 3})])
            assert posted.status_code == 200 and posted.json()["accepted"] == 3, posted.text
            self.done += 1

    async def going(self, n: int) -> bool:
        for task in self.tasks:  # a writer that failed says why
            if task.done():
                task.result()
        return self.done >= n

    async def __aenter__(self):
        self.tasks = [asyncio.create_task(self._loop()) for _ in range(self.writers)]
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass


async def test_consistency_finds_no_difference_under_a_live_writer(registry, reporting, settings):
    reporting.app.state.runtime.state["registry_transport"] = httpx.ASGITransport(app=registry.app)
    city = token_for(settings, "city")
    await settled(reporting, settings, registry)
    async with LiveWriter(registry, settings) as writer:
        await eventually(lambda: writer.going(20), timeout=60, message="the writer is going")
        bodies = []
        for _ in range(4):
            before = writer.done
            body = (await reporting.get("/v1/consistency", headers=city)).json()
            bodies.append(body)
            assert writer.done > before  # the registry kept changing during the comparison
    assert all(b["consistent"] for b in bodies), [b["differences"] for b in bodies]
    assert any(b["recent_residents"] > 0 for b in bodies)  # the comparisons did run under the writer
    assert all(b["compared"]["facilities"] >= 5 and b["compared"]["training_records"] > 0 for b in bodies)


async def test_consistency_finds_tampered_facility_and_training_figures_under_a_live_writer(registry, reporting,
                                                                                            settings):
    reporting.app.state.runtime.state["registry_transport"] = httpx.ASGITransport(app=registry.app)
    city = token_for(settings, "city")
    runtime = reporting.app.state.runtime
    # a facility the writer does not touch (reported and folded first), and the training total of a
    # county the writer does not post for
    fid = f"tamper-{uuid.uuid4().hex[:8]}"
    posted = await registry.post("/v1/events", headers=token_for(settings, "county", "410928"), json=[event(
        "eldercare.county.facility.reported.v1", {"facility_id": fid, "facility_type": "institution",
                                                  "name": "颐养院", "beds": 100, "nursing_beds": 60, "occupied": 70})])
    assert posted.json()["accepted"] == 1, posted.text

    async def folded():
        async with runtime.db.connection() as conn:
            return await conn.fetchval("SELECT count(*) FROM facilities WHERE facility_id = $1", fid) == 1

    await eventually(folded, timeout=60, message="the facility report folded")
    async with LiveWriter(registry, settings) as writer:
        await eventually(lambda: writer.going(10), timeout=60, message="the writer is going")
        async with runtime.db.transaction() as conn:
            facility = {"county_code": "410928", "facility_id": fid}
            await conn.execute("UPDATE facilities SET beds = beds + 9 WHERE county_code = $1 AND facility_id = $2",
                               facility["county_code"], facility["facility_id"])
            await conn.execute("INSERT INTO training (county_code, trainees, sessions) VALUES ('410922', 5, 0) "
                               "ON CONFLICT (county_code) DO UPDATE SET trainees = training.trainees + 5")
        try:
            body = (await reporting.get("/v1/consistency", headers=city)).json()
        finally:
            async with runtime.db.transaction() as conn:
                await conn.execute("UPDATE facilities SET beds = beds - 9 WHERE county_code = $1 AND facility_id = $2",
                                   facility["county_code"], facility["facility_id"])
                await conn.execute("UPDATE training SET trainees = trainees - 5 WHERE county_code = '410922'")
    found = {(d["scope"], d["dimension"], d["bucket"]): d for d in body["differences"]}
    assert set(found) == {(facility["county_code"], "facility", facility["facility_id"]),
                          ("410922", "training", "trainees")}, body["differences"]
    tampered = found[(facility["county_code"], "facility", facility["facility_id"])]
    assert tampered["reporting"]["beds"] - tampered["registry"]["beds"] == 9
    assert found[("410922", "training", "trainees")]["reporting"] - found[("410922", "training", "trainees")][
        "registry"] == 5


async def test_consistency_finds_a_tampered_counter_at_once_even_under_a_live_writer(registry, reporting, settings):
    reporting.app.state.runtime.state["registry_transport"] = httpx.ASGITransport(app=registry.app)
    city = token_for(settings, "city")
    await settled(reporting, settings, registry)
    runtime = reporting.app.state.runtime
    bump = ("INSERT INTO agg_counts (county_code, dim, bucket, n) VALUES ('410928', 'gender', 'female', $1) "
            "ON CONFLICT (county_code, dim, bucket) DO UPDATE SET n = agg_counts.n + EXCLUDED.n")
    async with runtime.db.transaction() as conn:
        await conn.execute(bump, 7)
    try:
        async with LiveWriter(registry, settings) as writer:
            await eventually(lambda: writer.going(10), timeout=60, message="the writer is going")
            body = (await reporting.get("/v1/consistency", headers=city)).json()
    finally:
        async with runtime.db.transaction() as conn:
            await conn.execute(bump, -7)
    assert body["consistent"] is False
    [difference] = [d for d in body["differences"] if d["scope"] == "410928" and d["dimension"] == "gender"]
    assert difference["reporting"] - difference["registry"] == 7
    # nothing else: the writer's beds and residents on their way are not differences
    assert {(d["scope"], d["dimension"]) for d in body["differences"]} == {("410928", "gender")}


async def test_rebuild_from_the_event_log_ends_with_exactly_the_same_figures(reporting, settings):
    from eldercare.replay import diff, figures

    city = token_for(settings, "city")
    await settled(reporting, settings)
    before = (await reporting.get("/v1/aggregates", headers=city)).json()
    assert (await reporting.post("/v1/admin/rebuild", headers=token_for(settings, "viewer"))).status_code == 403
    started = await reporting.post("/v1/admin/rebuild", headers=city)
    assert started.status_code == 200

    async def done():
        status = (await reporting.get("/v1/admin/rebuild", headers=city)).json()
        if status["lag"] != 0 or status["applied"] == 0:
            return None
        after = (await reporting.get("/v1/aggregates", headers=city)).json()
        return after if not diff(figures(before), figures(after)) else None

    after = await eventually(done, timeout=90)
    assert after["seq"] > before["seq"]


@pytest.fixture(scope="session")
async def reporting_url(reporting):
    """The same reporting app behind a real HTTP server (httpx's ASGI transport cannot stream)."""
    import uvicorn

    from eldercare.infra import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(reporting.app, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=None))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started, timeout=30, interval=0.05, message="server started")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_stream_sends_a_snapshot_then_deltas_and_resumes_after_a_reconnect(registry, reporting_url, settings):
    viewer = token_for(settings, "viewer")
    puyang = token_for(settings, "county", "410928")

    snapshot_received = asyncio.Event()

    async def read_events(client, headers, want, timeout=30):
        got = []
        async with client.stream("GET", "/v1/stream", headers=headers, timeout=timeout) as response:
            assert response.status_code == 200
            kind = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    got.append((kind, orjson.loads(line[6:])))
                    snapshot_received.set()  # subscribed before the snapshot: later deltas will come
                    if want(got):
                        return got
        return got

    async with httpx.AsyncClient(base_url=reporting_url) as client:
        async def post_training():
            await snapshot_received.wait()
            await registry.post("/v1/events", headers=puyang, json=[
                event("eldercare.county.training.recorded.v1", {"course": "流", "trainees": 7})])

        poster = asyncio.create_task(post_training())
        got = await asyncio.wait_for(read_events(client, viewer, lambda g: any(k == "delta" for k, _ in g)), 60)
        await poster
        assert got[0][0] == "snapshot"
        snapshot_seq = got[0][1]["seq"]
        delta = next(d for k, d in got if k == "delta")
        assert delta["seq"] > snapshot_seq and delta["training"]

        # Reconnect from the snapshot's sequence: the missed delta comes again, no snapshot.
        resumed = await asyncio.wait_for(read_events(client, {**viewer, "Last-Event-ID": str(snapshot_seq)},
                                                     lambda g: len(g) >= 1), 30)
        assert resumed[0][0] == "delta" and resumed[0][1]["seq"] == snapshot_seq + 1


async def test_websocket_sends_snapshot_then_deltas_and_refuses_without_token(registry, reporting_url, settings):
    import websockets

    raw_token = token_for(settings, "viewer")["Authorization"].split()[1]
    ws_url = reporting_url.replace("http://", "ws://") + "/v1/ws"
    puyang = token_for(settings, "county", "410928")
    async with websockets.connect(f"{ws_url}?access_token={raw_token}") as ws:
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "snapshot" and "city" in first["data"]["scopes"]
        await registry.post("/v1/events", headers=puyang, json=[
            event("eldercare.county.training.recorded.v1", {"course": "ws", "trainees": 3})])
        while True:
            message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            if message["type"] == "delta":
                assert message["seq"] > first["seq"]
                break
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        async with websockets.connect(ws_url) as ws:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 4401


async def _produce(settings, records: list[tuple[str, bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_a_redelivered_snapshot_or_training_record_changes_nothing(registry, reporting, settings):
    # Snapshots are kept idempotent by their version (no inbox row); additive records by the inbox.
    puyang = token_for(settings, "county", "410928")
    viewer = token_for(settings, "viewer")
    await settled(reporting, settings, registry)
    before = await county_view(reporting, viewer)
    rid = (await registry.post("/v1/residents", headers=puyang, json={
        "name": "李桂兰", "id_number": fresh_id_number(), "county_code": "410928", "township": "城关镇",
        "village": "西街社区", "living_arrangement": "empty_nest", "categories": ["low_income"]})).json()["id"]
    await settled(reporting, settings, registry)
    async with registry.app.state.runtime.db.connection() as conn:
        payloads = await conn.fetchval("SELECT array_agg(payload) FROM outbox WHERE key = $1", rid)
    registered = next(p for p in payloads if orjson.loads(p)["type"] == "eldercare.resident.registered.v1")
    training = orjson.dumps(event("eldercare.county.training.recorded.v1", {"course": "重复投递", "trainees": 5}))
    again = [("eldercare.registry.residents.v1", rid.encode(), bytes(registered)),
             ("eldercare.registry.ingest.v1", b"county:410928", training)]
    await _produce(settings, again + again)
    await settled(reporting, settings)
    after = await county_view(reporting, viewer)
    assert after["residents"]["registered"] == before["residents"]["registered"] + 1
    assert after["residents"]["by_category"]["low_income"] == before["residents"]["by_category"].get("low_income", 0) + 1
    assert after["training"]["trainees"] == before["training"]["trainees"] + 5
    assert after["training"]["sessions"] == before["training"]["sessions"] + 1


async def test_a_malformed_resident_event_goes_to_the_dlq_naming_the_field(reporting, settings):
    from tests.integration.support import read_topic

    viewer = token_for(settings, "viewer")
    await settled(reporting, settings)
    before = (await reporting.get("/v1/aggregates/city", headers=viewer)).json()
    rid = str(uuid.uuid4())
    bad = event("eldercare.resident.registered.v1", {"resident": {
        "resident_id": rid, "county_code": "410928", "name": "n", "birth_date": "1950-01-01", "gender": "robot",
        "township": "t", "village": "v", "living_arrangement": "alone", "version": 1}}, subject=rid)
    await _produce(settings, [("eldercare.registry.residents.v1", rid.encode(), orjson.dumps(bad))])
    dead = await read_topic(settings.kafka_bootstrap_servers, "eldercare.registry.residents.v1.dlq", idle=4,
                            timeout=60)
    reasons = {e.get("id"): dict(r.headers)["dlq-reason"].decode() for r, e in json_records(dead)}
    assert "resident.gender" in reasons[bad["id"]]
    await settled(reporting, settings)
    after = (await reporting.get("/v1/aggregates/city", headers=viewer)).json()
    assert after["residents"] == before["residents"]


async def test_a_redelivered_bad_snapshot_is_dead_lettered_once(reporting, settings):
    from tests.integration.support import read_topic

    await settled(reporting, settings)
    rid = str(uuid.uuid4())
    # Snapshots need no inbox row of their own (applying one twice changes nothing); a bad one must
    # still reach the dead-letter topic once, not once per delivery.
    bad = event("eldercare.resident.registered.v1", {"resident": {
        "resident_id": rid, "county_code": "999999", "name": "n", "birth_date": "1950-01-01", "gender": "male",
        "township": "t", "village": "v", "living_arrangement": "alone", "version": 1}}, subject=rid)
    record = ("eldercare.registry.residents.v1", rid.encode(), orjson.dumps(bad))
    await _produce(settings, [record])
    await settled(reporting, settings)
    await _produce(settings, [record, record])
    await settled(reporting, settings)
    dead = await read_topic(settings.kafka_bootstrap_servers, "eldercare.registry.residents.v1.dlq", idle=4,
                            timeout=60)
    ours = [dict(r.headers)["dlq-reason"].decode() for r, e in json_records(dead) if e.get("id") == bad["id"]]
    assert len(ours) == 1 and "unknown county" in ours[0]


OTHER_COUNTIES = ("410922", "410923", "410926", "410927", "410902", "410971", "410972", "410973")
OTHER_NAMES = ("清丰县", "南乐县", "范县", "台前县", "华龙区", "开发区", "工业园区", "示范区")


async def test_a_county_token_reads_its_own_county_and_the_city_never_another(reporting, settings):
    import io

    import openpyxl

    puyang = token_for(settings, "county", "410928")
    assert (await reporting.get("/v1/aggregates/counties/410928", headers=puyang)).status_code == 200
    for other in OTHER_COUNTIES:
        denied = await reporting.get(f"/v1/aggregates/counties/{other}", headers=puyang)
        assert denied.status_code == 403 and denied.json()["field"] == "code", other
    assert (await reporting.get("/v1/aggregates/city", headers=puyang)).status_code == 200

    everything = (await reporting.get("/v1/aggregates", headers=puyang)).json()
    assert set(everything["scopes"]) == {"city", "410928"}
    rows = (await reporting.get("/v1/targets", headers=puyang)).json()["rows"]
    assert [r["county_code"] for r in rows] == ["410928", "city"]
    # The city row is the same for everyone (apportioned over every county first).
    viewer_rows = (await reporting.get("/v1/targets", headers=token_for(settings, "viewer"))).json()["rows"]
    assert len(viewer_rows) == 10 and viewer_rows[-1]["indicators"] == rows[-1]["indicators"]

    text = (await reporting.get("/v1/exports/targets.csv", headers=puyang)).content.decode("utf-8-sig")
    assert len(text.splitlines()) == 3 and "濮阳县" in text and "濮阳市" in text
    assert not [name for name in OTHER_NAMES if name in text]
    book = openpyxl.load_workbook(io.BytesIO((await reporting.get("/v1/exports/targets.xlsx", headers=puyang)).content))
    codes = [row[0] for row in book.active.iter_rows(min_row=3, values_only=True)]  # two header rows
    assert codes == ["410900", "410928"]  # the city row first, as in the document

    # Viewer and city see every county.
    for who in ("viewer", "city"):
        headers = token_for(settings, who)
        assert len((await reporting.get("/v1/aggregates", headers=headers)).json()["scopes"]) == 10
        assert (await reporting.get("/v1/aggregates/counties/410922", headers=headers)).status_code == 200


async def test_a_token_in_the_query_string_is_refused_outside_the_live_streams(reporting, registry, settings):
    raw = token_for(settings, "viewer")["Authorization"].split()[1]
    for path in ("/v1/aggregates", "/v1/aggregates/city", "/v1/targets", "/v1/exports/targets.csv"):
        answer = await reporting.get(path, params={"access_token": raw})
        assert answer.status_code == 401, path
    city_raw = token_for(settings, "city")["Authorization"].split()[1]
    for name in ("access_token", "token"):
        assert (await registry.get("/v1/imports", params={name: city_raw})).status_code == 401


async def test_the_live_streams_carry_only_the_subscribers_county_and_the_city(registry, reporting_url, settings):
    import websockets

    puyang = token_for(settings, "county", "410928")
    qingfeng = token_for(settings, "county", "410922")
    raw = puyang["Authorization"].split()[1]
    tag = uuid.uuid4().hex[:6]

    def rows_of(frame: dict) -> list[dict]:
        return [r for key in ("counts", "facilities", "training") for r in frame.get(key, [])]

    async def post_both():
        await asyncio.sleep(1.0)
        # The other county first: its delta must never reach Puyang's subscribers.
        await registry.post("/v1/events", headers=qingfeng, json=[
            event("eldercare.county.facility.reported.v1", {"facility_id": f"Q-{tag}", "facility_type": "township_home",
                                                            "name": "清丰敬老院", "beds": 10, "nursing_beds": 5,
                                                            "occupied": 1}, county="410922")])
        await asyncio.sleep(1.0)
        await registry.post("/v1/events", headers=puyang, json=[
            event("eldercare.county.facility.reported.v1", {"facility_id": f"P-{tag}", "facility_type": "township_home",
                                                            "name": "濮阳敬老院", "beds": 10, "nursing_beds": 5,
                                                            "occupied": 1})])

    async def sse_frames() -> list[tuple[str, dict]]:
        got: list[tuple[str, dict]] = []
        async with httpx.AsyncClient(base_url=reporting_url) as client:
            async with client.stream("GET", "/v1/stream", params={"access_token": raw}, timeout=60) as response:
                assert response.status_code == 200
                kind = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        got.append((kind, orjson.loads(line[6:])))
                        if any(f.get("facility_id") == f"P-{tag}" for k, d in got if k == "delta"
                               for f in d["facilities"]):
                            return got
        return got

    async def ws_frames() -> list[dict]:
        got: list[dict] = []
        ws_url = reporting_url.replace("http://", "ws://") + f"/v1/ws?access_token={raw}"
        async with websockets.connect(ws_url) as ws:
            while True:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
                got.append(message)
                if message["type"] == "delta" and any(
                        f.get("facility_id") == f"P-{tag}" for f in message["data"]["facilities"]):
                    return got

    poster = asyncio.create_task(post_both())
    sse, ws = await asyncio.wait_for(asyncio.gather(sse_frames(), ws_frames()), 90)
    await poster
    for snapshot in [d for k, d in sse if k == "snapshot"] + [m["data"] for m in ws if m["type"] == "snapshot"]:
        assert set(snapshot["scopes"]) == {"city", "410928"}
    deltas = [d for k, d in sse if k == "delta"] + [m["data"] for m in ws if m["type"] == "delta"]
    assert deltas
    for delta in deltas:
        assert {r["county"] for r in rows_of(delta)} <= {"410928", "city"}, delta
    assert f"Q-{tag}" not in orjson.dumps(sse).decode() + orjson.dumps(ws).decode()


async def test_consistency_is_for_the_city_only(registry, reporting, settings):
    # Three registry recounts of 700,000 rows per call: not something every dashboard viewer may start.
    reporting.app.state.runtime.state["registry_transport"] = httpx.ASGITransport(app=registry.app)
    for who, county in (("viewer", None), ("county", "410928")):
        answer = await reporting.get("/v1/consistency", headers=token_for(settings, who, county))
        assert answer.status_code == 403, who
    assert (await reporting.get("/v1/consistency", headers=token_for(settings, "city"))).status_code == 200


async def test_aggregates_publisher_closes_its_producer_when_cancelled_between_frames(reporting, settings,
                                                                                      private_broker):
    # At shutdown the sender task is cancelled while it waits for the next frame; it left its producer
    # open ("Unclosed AIOKafkaProducer" at exit). On a private broker: these frames are made up.
    import types

    from services.reporting.publisher import AggregatesPublisher
    from shared.messaging.kafka import ensure_topics
    from shared.messaging.topics import AGGREGATES

    await ensure_topics(private_broker.bootstrap, [AGGREGATES.name], 1)
    runtime = types.SimpleNamespace(
        settings=settings.model_copy(update={"kafka_bootstrap_servers": private_broker.bootstrap}),
        db=reporting.app.state.runtime.db, tasks=[])
    publisher = AggregatesPublisher(runtime)
    publisher.on_committed([{"seq": 1, "scopes": {}}])

    async def sent() -> bool:
        return publisher.sent == 1 and publisher.queue.empty()

    await eventually(sent, timeout=30, message="the frame was sent")
    producer = publisher.producer
    await asyncio.sleep(0.2)  # waiting for the next frame now
    publisher.task.cancel()
    await asyncio.gather(publisher.task, return_exceptions=True)
    assert producer._closed and publisher.producer is None  # noqa: SLF001 - aiokafka has no public flag


# ------------------------------------------------------------------ below the county


def townships_url(code: str) -> str:
    return f"/v1/aggregates/counties/{code}/townships"


def villages_url(code: str, township: str) -> str:
    return f"{townships_url(code)}/{quote(township)}/villages"


async def register(registry, headers, township: str, village: str, birth_year: int, **extra) -> str:
    response = await registry.post("/v1/residents", headers=headers, json={
        "name": "孙玉兰", "id_number": fresh_id_number("410928", birth_year), "county_code": "410928",
        "township": township, "village": village, "living_arrangement": "alone", **extra})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_a_county_drills_down_to_its_townships_and_villages_with_the_family_doctor_kpi(
        registry, reporting, settings):
    puyang = token_for(settings, "county", "410928")
    viewer = token_for(settings, "viewer")
    # A township of its own (not on the county's list), so the figures are this test's alone.
    township = f"试点镇{uuid.uuid4().hex[:6]}"
    signed = {"family_doctor_contract": True, "family_doctor_signed_on": "2026-04-01"}
    await register(registry, puyang, township, "东村", 1950, **signed)
    await register(registry, puyang, township, "东村", 1948, categories=["dementia"])
    await register(registry, puyang, township, "西村", 1952, **signed)
    young = await register(registry, puyang, township, "西村", 1963, family_doctor_contract=True)  # 60-64
    await register(registry, puyang, township, "西村", 1940)

    async def ours() -> dict | None:
        response = await reporting.get(townships_url("410928"), headers=viewer)
        assert response.status_code == 200, response.text
        found = [t for t in response.json()["townships"] if t["name"] == township]
        return found[0] if found and found[0]["residents"]["registered"] == 5 else None

    mine = await eventually(ours, message="the township's residents folded")
    assert mine["residents"]["active"] == 5 and mine["residents"]["by_category"] == {"dementia": 1}
    assert mine["residents"]["by_age_band"]["60-64"] == 1 and mine["residents"]["advanced_age_80plus"] == 1
    # 65+: four elders (1950, 1948, 1952, 1940), two of them with a contract; the one under 65 is not counted.
    assert mine["family_doctor"] == {"elderly_65plus": 4, "contracted_65plus": 2, "share_65plus": 0.5,
                                     "contracted": 3}
    assert "孙玉兰" not in str(mine)

    villages = (await reporting.get(villages_url("410928", township), headers=viewer)).json()
    assert villages["township"] == township and [v["name"] for v in villages["villages"]] == ["东村", "西村"]
    west = villages["villages"][1]
    assert west["residents"]["registered"] == 3 and west["family_doctor"]["contracted_65plus"] == 1
    assert west["family_doctor"]["elderly_65plus"] == 2

    # The county's listed townships come first, in the list's order, each present even if empty.
    listed = [t["name"] for t in (await reporting.get(townships_url("410928"), headers=viewer)).json()["townships"]]
    assert listed[:3] == ["城关镇", "柳屯镇", "文留镇"] and township in listed

    # A contract ended moves the KPI (of someone under 65: the 65+ share stays).
    etag = (await registry.get(f"/v1/residents/{young}", headers=puyang)).headers["etag"]
    ended = await registry.patch(f"/v1/residents/{young}", json={"family_doctor_contract": False},
                                 headers={**puyang, "If-Match": etag})
    assert ended.status_code == 200

    async def ended_folded() -> dict | None:
        got = await ours()
        return got if got and got["family_doctor"]["contracted"] == 2 else None

    assert (await eventually(ended_folded))["family_doctor"]["contracted_65plus"] == 2


async def test_county_kpi_and_township_sums_agree_with_the_county_figures(registry, reporting, settings):
    viewer = token_for(settings, "viewer")
    await settled(reporting, settings, registry)
    county = (await reporting.get("/v1/aggregates/counties/410928", headers=viewer)).json()
    townships = (await reporting.get(townships_url("410928"), headers=viewer)).json()["townships"]
    assert sum(t["residents"]["registered"] for t in townships) == county["residents"]["registered"]
    assert sum(t["residents"]["active"] for t in townships) == county["residents"]["active"]
    for key in ("elderly_65plus", "contracted_65plus", "contracted"):
        assert sum(t["family_doctor"][key] for t in townships) == county["family_doctor"][key]
    assert county["family_doctor"]["contracted"] >= 2  # the drill-down test's, at least
    city = (await reporting.get("/v1/aggregates/city", headers=viewer)).json()
    assert city["family_doctor"]["contracted_65plus"] >= county["family_doctor"]["contracted_65plus"]
    # and the consistency check, which compares the family-doctor and township counters too, agrees
    reporting.app.state.runtime.state["registry_transport"] = httpx.ASGITransport(app=registry.app)
    body = (await reporting.get("/v1/consistency", headers=token_for(settings, "city"))).json()
    assert resident_differences(body) == [], body["differences"]


def resident_differences(consistency: dict) -> list[dict]:
    """The differences in resident counters (earlier tests here publish training records of their own
    straight to the ingest topic, which the registry never saw)."""
    return [d for d in consistency["differences"] if d["dimension"] not in ("facility", "training", "training_record")]


async def test_a_county_token_sees_its_own_townships_only(reporting, settings):
    qingfeng = token_for(settings, "county", "410922")
    assert (await reporting.get(townships_url("410922"), headers=qingfeng)).status_code == 200
    for url in (townships_url("410928"), villages_url("410928", "城关镇")):
        refused = await reporting.get(url, headers=qingfeng)
        assert refused.status_code == 403 and refused.json()["field"] == "code"
    unknown = await reporting.get(townships_url("999999"), headers=qingfeng)
    assert unknown.status_code == 404 and unknown.json()["field"] == "code"
    no_such = await reporting.get(villages_url("410922", "没有这个乡"), headers=qingfeng)
    assert no_such.status_code == 404 and no_such.json()["field"] == "township"
    assert (await reporting.get(townships_url("410922"))).status_code == 401


async def test_a_tampered_family_doctor_counter_is_a_difference(registry, reporting, settings):
    reporting.app.state.runtime.state["registry_transport"] = httpx.ASGITransport(app=registry.app)
    await settled(reporting, settings, registry)
    runtime = reporting.app.state.runtime
    bump = ("INSERT INTO agg_counts (county_code, dim, bucket, n) VALUES ('410928', 'family_doctor', '1950-01', $1) "
            "ON CONFLICT (county_code, dim, bucket) DO UPDATE SET n = agg_counts.n + EXCLUDED.n")
    async with runtime.db.transaction() as conn:
        await conn.execute(bump, 2)
    try:
        body = (await reporting.get("/v1/consistency", headers=token_for(settings, "city"))).json()
    finally:
        async with runtime.db.transaction() as conn:
            await conn.execute(bump, -2)
    # the county's counter only (the registry's city total is the counties' sum, as is ours)
    assert {(d["scope"], d["dimension"], d["bucket"]) for d in resident_differences(body)} == {
        ("410928", "family_doctor", "1950-01")}
