"""The orders service against the real PostgreSQL and broker: the residents projection, catalog,
parties, entitlements and funding split, orders and their lifecycle with visit verification."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import orjson

from shared.messaging.kafka import make_producer
from shared.messaging.topics import ORDERS, RESIDENTS
from tests.conftest import fresh_id_number, token_for
from tests.integration.orders_fixtures import (
    HOME, new_caregiver, new_provider, new_resident, place, projected, publish_residents, runtime_of,
    snapshot_event, soon,
)
from tests.integration.support import eventually, read_topic

NORTH_300M = HOME[0] + 300 / 111_195


def at(minutes_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()


async def worked_order(orders, settings, rid=None, caregiver_kind="nurse", items=None):
    """An order placed, accepted and assigned; returns (order id, provider, caregiver, tokens)."""
    rid = rid or await new_resident(orders, settings)
    provider = await new_provider(orders, settings)
    caregiver = await new_caregiver(orders, settings, provider, caregiver_kind)
    county = token_for(settings, "county", "410928")
    prov = token_for(settings, "provider", provider_id=provider)
    cg = token_for(settings, "caregiver", caregiver_id=caregiver)
    response = await place(orders, county, rid, provider, items=items)
    assert response.status_code == 201, response.text
    oid = response.json()["id"]
    assert (await orders.post(f"/v1/orders/{oid}/accept", headers=prov)).status_code == 200
    r = await orders.post(f"/v1/orders/{oid}/assign", headers=prov, json={"caregiver_id": caregiver})
    assert r.status_code == 200, r.text
    return oid, provider, caregiver, {"county": county, "provider": prov, "caregiver": cg, "rid": rid}


# ------------------------------------------------------------------ projection


async def forward_registry_events(settings, orders, rid: str, count: int) -> None:
    """The registry's own records of a resident, copied from the suite's broker to the orders tests'
    broker as they are (key, value, headers): what the registry's relay would have sent there."""
    from tests.integration.support import read_topic

    records = [r for r in await read_topic(settings.kafka_bootstrap_servers, RESIDENTS.name, idle=1.0)
               if r.key == rid.encode()]
    assert len(records) >= count, f"the registry published {len(records)} records of {rid}, expected {count}"
    producer = make_producer(runtime_of(orders).settings.kafka_bootstrap_servers, "orders-tests-forward")
    await producer.start()
    try:
        for record in records[:count]:
            await producer.send_and_wait(RESIDENTS.name, record.value, key=record.key, headers=list(record.headers))
    finally:
        await producer.stop()


async def test_resident_registered_in_the_registry_reaches_the_orders_projection(registry, orders, settings):
    puyang = token_for(settings, "county", "410928")
    response = await registry.post("/v1/residents", headers=puyang, json={
        "name": "王桂英", "id_number": fresh_id_number(), "county_code": "410928", "township": "城关镇",
        "village": "东街社区", "living_arrangement": "alone", "categories": ["minimum_allowance"], "ability_level": 1})
    assert response.status_code == 201, response.text
    rid = response.json()["id"]
    await forward_registry_events(settings, orders, rid, 1)
    row = await projected(orders, rid)
    assert (row["county_code"], row["living_arrangement"], list(row["categories"]), row["ability_level"]) == (
        "410928", "alone", ["minimum_allowance"], 1)
    etag = response.headers["ETag"]
    r = await registry.patch(f"/v1/residents/{rid}", headers={**puyang, "If-Match": etag},
                             json={"categories": ["minimum_allowance", "dementia"]})
    assert r.status_code == 200, r.text
    await forward_registry_events(settings, orders, rid, 2)
    row = await projected(orders, rid, version=2)
    assert sorted(row["categories"]) == ["dementia", "minimum_allowance"]


async def test_an_older_snapshot_arriving_late_does_not_undo_a_newer_one(orders, settings):
    rid = str(uuid.uuid4())
    await publish_residents(runtime_of(orders).settings, [
        snapshot_event(rid, version=3, ability_level=4, categories=["dementia"]),
        snapshot_event(rid, version=2, event_type="eldercare.resident.updated.v1", categories=[]),
        assessed(rid, 3)])
    row = await after_marker(orders, rid)
    assert (row["version"], list(row["categories"]), row["home_lat"]) == (3, ["dementia"], HOME[0])


def assessed(rid: str, level: int):
    from shared.events import make_event

    return make_event("eldercare.resident.assessed.v1", "registry", {
        "resident_id": rid, "county_code": "410928", "assessment_id": str(uuid.uuid4()), "level": level,
        "reason": "routine", "assessed_on": "2026-12-01", "assessor": "test"}, subject=rid)


async def after_marker(orders, rid: str, level: int = 3):
    """The resident once the assessment published last (same key, so same partition, after the
    events before it) has been applied: everything before it has been consumed too."""
    from tests.integration.support import eventually

    async def marked() -> bool:
        async with runtime_of(orders).db.connection() as conn:
            return await conn.fetchval("SELECT ability_level FROM residents WHERE resident_id = $1",
                                       uuid.UUID(rid)) == level

    await eventually(marked, message="the marker assessment was not applied")
    async with runtime_of(orders).db.connection() as conn:
        return await conn.fetchrow("SELECT * FROM residents WHERE resident_id = $1", uuid.UUID(rid))


async def test_a_republished_snapshot_is_applied_by_version(orders, settings):
    rid = str(uuid.uuid4())
    await publish_residents(runtime_of(orders).settings, [
        snapshot_event(rid, version=1),
        snapshot_event(rid, version=5, event_type="eldercare.resident.snapshot.v1", categories=["dementia"]),
        snapshot_event(rid, version=4, event_type="eldercare.resident.snapshot.v1", categories=[]),
        assessed(rid, 3)])
    row = await after_marker(orders, rid)
    assert (row["version"], list(row["categories"])) == (5, ["dementia"])


# ------------------------------------------------------------------ catalog and parties


async def test_catalog_lists_the_whole_menu_with_the_countys_providers_and_prices(orders, settings):
    provider = await new_provider(orders, settings, cleaning=3900)
    other = await new_provider(orders, settings, county="410922")
    viewer = token_for(settings, "viewer")
    r = await orders.get("/v1/catalog", params={"county": "410928"}, headers=viewer)
    assert r.status_code == 200, r.text
    items = {i["code"]: i for i in r.json()["items"]}
    assert len(items) == 22
    assert items["bathing"]["unit"] == "visit" and items["bathing"]["qualification"] == "nursing_assistant"
    assert items["bathing"]["eligibility"] == {"ability_level_min": 1}
    offers = {o["provider_id"]: o["price_fen"] for o in items["cleaning"]["providers"]}
    assert offers[provider] == 3900 and other not in offers
    assert (await orders.get("/v1/catalog", params={"county": "999999"}, headers=viewer)).status_code == 422


async def test_providers_and_caregivers_are_managed_by_city_and_own_county_only(orders, settings):
    provider = await new_provider(orders, settings)
    qingfeng = token_for(settings, "county", "410922")
    r = await orders.post("/v1/caregivers", headers=qingfeng, json={"provider_id": provider, "name": "张三"})
    assert r.status_code == 403
    prov = token_for(settings, "provider", provider_id=provider)
    r = await orders.post("/v1/providers", headers=prov, json={
        "name": "x", "provider_type": "company", "county_code": "410928"})
    assert r.status_code == 403
    r = await orders.post("/v1/providers", headers=token_for(settings, "city"), json={
        "name": "x", "provider_type": "company", "county_code": "410928",
        "items": [{"service_code": "levitation", "price_fen": 1, "daily_capacity": 1}]})
    assert r.status_code == 422 and r.json()["field"] == "items[0].service_code"
    caregiver = await new_caregiver(orders, settings, provider)
    seen = (await orders.get(f"/v1/caregivers/{caregiver}", headers=prov)).json()
    assert seen["phone"] == "138****8000"
    puyang = token_for(settings, "county", "410928")
    r = await orders.get(f"/v1/caregivers/{caregiver}", headers=puyang)
    assert r.json()["phone"] == "13800138000"
    r = await orders.patch(f"/v1/caregivers/{caregiver}", headers=puyang, json={"name": "李秀兰"})
    assert r.status_code == 428
    r2 = await orders.patch(f"/v1/caregivers/{caregiver}", headers={**puyang, "If-Match": r.headers.get("ETag") or
                                                                      '"stale.0"'}, json={"name": "李秀兰"})
    assert r2.status_code == 412 and r2.json()["field"] == "If-Match"


async def test_a_caregiver_is_assigned_only_services_their_valid_certificates_allow(orders, settings):
    rid = await new_resident(orders, settings, ability_level=3)
    provider = await new_provider(orders, settings)
    expired_nurse = await new_caregiver(orders, settings, provider, "nurse", expires=date.today() - timedelta(days=1))
    assistant = await new_caregiver(orders, settings, provider, "nursing_assistant")
    nurse = await new_caregiver(orders, settings, provider, "nurse")
    county = token_for(settings, "county", "410928")
    prov = token_for(settings, "provider", provider_id=provider)
    oid = (await place(orders, county, rid, provider, items=[{"service_code": "nursing_care", "quantity": 1}])).json()["id"]
    await orders.post(f"/v1/orders/{oid}/accept", headers=prov)
    for caregiver in (expired_nurse, assistant):
        r = await orders.post(f"/v1/orders/{oid}/assign", headers=prov, json={"caregiver_id": caregiver})
        assert r.status_code == 422 and r.json()["field"] == "caregiver_id", r.text
        assert "nurse" in r.json()["detail"]
    r = await orders.post(f"/v1/orders/{oid}/assign", headers=prov, json={"caregiver_id": nurse})
    assert r.status_code == 200 and r.json()["caregiver_id"] == nurse


# ------------------------------------------------------------------ placing orders


async def test_same_key_and_body_give_the_same_order_and_another_body_is_refused(orders, settings):
    rid = await new_resident(orders, settings)
    provider = await new_provider(orders, settings)
    county = token_for(settings, "county", "410928")
    # in the city's time zone: the answer is the stored order's, whose time PostgreSQL gives back in UTC
    start = (datetime.now(timezone(timedelta(hours=8))) + timedelta(hours=3)).isoformat()
    body = {"resident_id": rid, "provider_id": provider, "items": [{"service_code": "cleaning", "quantity": 2}],
            "scheduled_start": start, "channel": "county_operator"}
    first = await orders.post("/v1/orders", headers={**county, "Idempotency-Key": "k-" + rid}, json=body)
    again = await orders.post("/v1/orders", headers={**county, "Idempotency-Key": "k-" + rid}, json=body)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and again.headers["ETag"] == first.headers["ETag"]
    # the answer, built without reading the order back, is what reading it gives
    stored = await orders.get(first.headers["Location"], headers=county)
    assert stored.json() == first.json() and stored.headers["ETag"] == first.headers["ETag"]
    other = await orders.post("/v1/orders", headers={**county, "Idempotency-Key": "k-" + rid},
                              json={**body, "items": [{"service_code": "cleaning", "quantity": 1}]})
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    missing = await orders.post("/v1/orders", headers=county, json=body)
    assert missing.status_code == 400 and missing.json()["field"] == "Idempotency-Key"
    async with runtime_of(orders).db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE resident_id = $1", uuid.UUID(rid)) == 1


async def test_concurrent_repeats_of_one_key_place_one_order_and_all_get_its_answer(orders, settings):
    import asyncio

    rid = await new_resident(orders, settings)
    provider = await new_provider(orders, settings)
    county = token_for(settings, "county", "410928")
    start = soon(4)
    answers = await asyncio.gather(*(place(orders, county, rid, provider, key="same-" + rid, scheduled_start=start)
                                     for _ in range(6)))
    assert {a.status_code for a in answers} == {201} and len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 5
    async with runtime_of(orders).db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE resident_id = $1", uuid.UUID(rid)) == 1
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", "same-" + rid) == 1


async def test_orders_are_refused_with_the_reason_and_nothing_half_written(orders, settings):
    rid = await new_resident(orders, settings, ability_level=0)
    provider = await new_provider(orders, settings, capacity=2)
    elsewhere = await new_provider(orders, settings, county="410922")
    county = token_for(settings, "county", "410928")

    async def refused(expected_status, field, **kw):
        r = await place(orders, county, kw.pop("rid", rid), kw.pop("provider", provider), **kw)
        assert r.status_code == expected_status, r.text
        assert r.json()["field"] == field, r.json()
        return r.json()

    await refused(404, "resident_id", rid=str(uuid.uuid4()))
    assert "ability level 1" in (await refused(422, "items[0].service_code",
                                               items=[{"service_code": "bathing", "quantity": 1}]))["detail"]
    await refused(422, "items[0].service_code", items=[{"service_code": "hospice_care", "quantity": 1}])
    await refused(422, "items[0].service_code", items=[{"service_code": "teleportation", "quantity": 1}])
    await refused(422, "items.0.quantity", items=[{"service_code": "cleaning", "quantity": 0}])
    await refused(422, "scheduled_start", scheduled_start=(datetime.now(timezone.utc) - timedelta(hours=1)).isoformat())
    await refused(422, "provider_id", provider=elsewhere)
    await refused(422, "call_reference", channel="hotline")
    await refused(403, "channel", channel="caregiver_app")
    await refused(409, "items[1].quantity", items=[{"service_code": "meal", "quantity": 1},
                                                   {"service_code": "cleaning", "quantity": 3}])
    qingfeng = token_for(settings, "county", "410922")
    r = await place(orders, qingfeng, rid, provider)
    assert r.status_code == 403 and r.json()["field"] == "resident_id"
    async with runtime_of(orders).db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE resident_id = $1", uuid.UUID(rid)) == 0
        # the meal line of the over-capacity order was rolled back with it
        assert await conn.fetchval("SELECT coalesce(sum(booked), 0) FROM provider_load WHERE provider_id = $1",
                                   provider) == 0
    # capacity is per day: two fit, the third unit does not
    assert (await place(orders, county, rid, provider, items=[{"service_code": "cleaning", "quantity": 2}])).status_code == 201
    await refused(409, "items[0].quantity")


async def test_deceased_or_transferred_residents_are_refused_and_a_visit_after_death_is_flagged(orders, settings):
    oid, _, _, t = await worked_order(orders, settings)
    rid = t["rid"]
    r = await orders.post(f"/v1/orders/{oid}/check-in", headers=t["caregiver"],
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5, "time": at(60)})
    assert r.status_code == 200
    from shared.events import make_event

    today = datetime.now(timezone(timedelta(hours=8))).date()
    await publish_residents(runtime_of(orders).settings, [make_event("eldercare.resident.deceased.v1", "registry", {
        "resident_id": rid, "county_code": "410928", "date_of_death": today.isoformat()}, subject=rid)])
    county = token_for(settings, "county", "410928")

    async def dead() -> bool:
        async with runtime_of(orders).db.connection() as conn:
            return await conn.fetchval("SELECT status FROM residents WHERE resident_id = $1", uuid.UUID(rid)) == "deceased"

    await eventually(dead, message="death not projected")
    r = await orders.post(f"/v1/orders/{oid}/check-out", headers=t["caregiver"],
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5})
    assert "after_death" in r.json()["flags"]
    provider = await new_provider(orders, settings)
    r = await place(orders, county, rid, provider)
    assert r.status_code == 422 and r.json()["field"] == "resident_id" and "died" in r.json()["detail"]
    moved = await new_resident(orders, settings, status="transferred")
    r = await place(orders, county, moved, provider)
    assert r.status_code == 422 and "moved out" in r.json()["detail"]
    r = await orders.get(f"/v1/entitlements/{rid}", headers=county)
    assert r.json()["benefits"] == [] and "deceased" in r.json()["note"]


# ------------------------------------------------------------------ money


async def test_split_follows_entitlement_caps_and_budgets_and_reconciles(orders, settings):
    city = token_for(settings, "city")
    county_code = "410927"  # a county of its own: the test sets its budget
    r = await orders.post("/v1/policies", headers=city, json={
        "scope": county_code, "effective_from": "2020-01-01",
        "benefits": [{"code": "dibao", "name": "低保", "source": "government", "share_pct": 80, "monthly_cap_fen": 5000,
                      "when": {"categories_any": ["minimum_allowance"]}},
                     {"code": "village", "name": "村集体", "source": "collective", "share_pct": 10,
                      "monthly_cap_fen": 100000, "when": {}}],
        "budgets": {"government": 100000, "collective": 700, "social": 0}})
    assert r.status_code == 201, r.text
    assert r.json()["ref"] == f"{county_code}@v1"
    rid = await new_resident(orders, settings, county_code=county_code, categories=["minimum_allowance"],
                             birth_date="1956-01-01", living_arrangement="with_family")
    provider = await new_provider(orders, settings, county=county_code)
    county = token_for(settings, "county", county_code)
    first = (await place(orders, county, rid, provider, items=[{"service_code": "cleaning", "quantity": 1}])).json()
    assert first["funding"] == {"government_fen": 3200, "collective_fen": 400, "social_fen": 0, "personal_fen": 400}
    assert first["policy_ref"] == f"{county_code}@v1+city@v1"
    second = (await place(orders, county, rid, provider, items=[{"service_code": "cleaning", "quantity": 1}])).json()
    # the monthly cap leaves 1800 fen of government money; the collective budget has 300 fen left
    assert second["funding"] == {"government_fen": 1800, "collective_fen": 300, "social_fen": 0, "personal_fen": 1900}
    assert any("collective budget exhausted" in n for n in second["subsidy_notes"])
    ent = (await orders.get(f"/v1/entitlements/{rid}", headers=county)).json()
    dibao = next(b for b in ent["benefits"] if b["code"] == "dibao")
    assert (dibao["quota_fen"], dibao["used_fen"], dibao["left_fen"]) == (5000, 5000, 0)
    budgets = (await orders.get("/v1/budgets", params={"county": county_code}, headers=county)).json()
    sources = {s["source"]: s for s in budgets["counties"][0]["sources"]}
    assert sources["collective"]["spent_fen"] == 700 and sources["collective"]["left_fen"] == 0
    assert sources["government"]["spent_fen"] == 5000
    # a cancelled order gives back what it took
    r = await orders.post(f"/v1/orders/{second['id']}/cancel", headers=county, json={"reason": "老人住院"})
    assert r.status_code == 200
    budgets = (await orders.get("/v1/budgets", params={"county": county_code}, headers=county)).json()
    sources = {s["source"]: s for s in budgets["counties"][0]["sources"]}
    assert sources["government"]["spent_fen"] == 3200 and sources["collective"]["spent_fen"] == 400
    async with runtime_of(orders).db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT sum(price_fen) p, sum(government_fen + collective_fen + social_fen + personal_fen) s "
            "FROM orders WHERE county_code = $1", county_code)
    assert row["p"] == row["s"]


async def test_only_the_city_edits_policies_and_bad_rules_name_the_field(orders, settings):
    county = token_for(settings, "county", "410928")
    body = {"scope": "410928", "effective_from": "2026-01-01", "budgets": {"government": 1}}
    assert (await orders.post("/v1/policies", headers=county, json=body)).status_code == 403
    city = token_for(settings, "city")
    r = await orders.post("/v1/policies", headers=city, json={**body, "benefits": [
        {"code": "x", "source": "government", "share_pct": 100, "monthly_cap_fen": 1, "when": {"colour": "red"}}]})
    assert r.status_code == 422 and r.json()["field"] == "benefits[0].when.colour"
    r = await orders.post("/v1/policies", headers=city, json={**body, "budgets": {"lottery": 5}})
    assert r.status_code == 422 and r.json()["field"] == "budgets.lottery"


# ------------------------------------------------------------------ lifecycle and EVV


async def test_a_verified_visit_from_placement_to_rating_with_its_events(orders, settings):
    oid, provider, caregiver, t = await worked_order(orders, settings)
    cg = t["caregiver"]
    r = await orders.post(f"/v1/orders/{oid}/rate", headers=t["county"], json={"rating": 5})
    assert r.status_code == 409 and r.json()["current_state"] == "assigned" and r.json()["field"] == "state"
    other_cg = token_for(settings, "caregiver", caregiver_id=await new_caregiver(orders, settings, provider))
    r = await orders.post(f"/v1/orders/{oid}/check-in", headers=other_cg,
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5})
    assert r.status_code == 403 and r.json()["field"] == "caregiver_id"
    r = await orders.post(f"/v1/orders/{oid}/check-in", headers=cg, json={"lat": 95, "lon": HOME[1], "accuracy_m": 5})
    assert r.status_code == 422 and r.json()["field"] == "lat"
    view = (await orders.get(f"/v1/orders/{oid}", headers=cg))
    assert view.json()["resident"]["township"] == "城关镇"  # open: the caregiver sees where to go
    r = await orders.post(f"/v1/orders/{oid}/check-in", headers={**cg, "If-Match": '"%s.1"' % oid},
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5})
    assert r.status_code == 412
    r = await orders.post(f"/v1/orders/{oid}/check-in", headers={**cg, "If-Match": view.headers["ETag"]},
                          json={"lat": HOME[0] + 0.0005, "lon": HOME[1], "accuracy_m": 8, "time": at(62)})
    assert r.status_code == 200, r.text
    assert 50 < r.json()["evv"]["check_in"]["distance_m"] < 60
    r = await orders.post(f"/v1/orders/{oid}/check-out", headers=cg,
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 8})
    done = r.json()
    assert done["state"] == "completed" and done["evv"]["status"] == "verified"
    assert done["evv"]["actual_minutes"] >= 61 and done["settlement_month"]
    r = await orders.post(f"/v1/orders/{oid}/rate", headers=t["county"], json={"rating": 6})
    assert r.status_code == 422 and r.json()["field"] == "rating"
    r = await orders.post(f"/v1/orders/{oid}/rate", headers=t["county"], json={"rating": 5, "comment": "很好"})
    assert r.json()["state"] == "rated"
    r = await orders.post(f"/v1/orders/{oid}/cancel", headers=t["county"], json={"reason": "x x"})
    assert r.status_code == 409 and r.json()["current_state"] == "rated"
    after = (await orders.get(f"/v1/orders/{oid}", headers=cg)).json()
    assert after["resident"]["township"] is None and after["resident"]["name"].endswith("*")
    records = await read_topic(runtime_of(orders).settings.kafka_bootstrap_servers, ORDERS.name, idle=3)
    mine = [orjson.loads(r.value) for r in records if r.key == oid.encode()]
    assert [e["type"].split(".")[2] for e in mine] == [
        "placed", "accepted", "assigned", "checked_in", "completed", "settled", "rated"]
    completed = next(e for e in mine if e["type"] == "eldercare.order.completed.v1")["data"]
    assert completed["evv_status"] == "verified" and completed["caregiver_id"] == caregiver


async def test_a_visit_outside_the_geofence_needs_a_reason_and_the_countys_confirmation(orders, settings):
    oid, _, _, t = await worked_order(orders, settings)
    cg = t["caregiver"]
    r = await orders.post(f"/v1/orders/{oid}/check-in", headers=cg,
                          json={"lat": NORTH_300M, "lon": HOME[1], "accuracy_m": 20, "time": at(20)})
    assert r.json()["evv"]["exceptions"] == ["check_in_outside_geofence"]
    r = await orders.post(f"/v1/orders/{oid}/check-out", headers=cg,
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5})
    done = r.json()
    assert done["evv"]["status"] == "exception" and done["settlement_month"] is None
    assert done["evv"]["exceptions"] == ["check_in_outside_geofence", "short_visit"]
    r = await orders.post(f"/v1/orders/{oid}/confirm-visit", headers=t["county"], json={})
    assert r.status_code == 422 and r.json()["field"] == "reason"
    r = await orders.post(f"/v1/orders/{oid}/visit-exception", headers=cg, json={"reason": "老人在村卫生室，就地服务"})
    assert r.status_code == 200
    qingfeng = token_for(settings, "county", "410922")
    assert (await orders.post(f"/v1/orders/{oid}/confirm-visit", headers=qingfeng, json={})).status_code == 403
    r = await orders.post(f"/v1/orders/{oid}/confirm-visit", headers=t["county"], json={})
    assert r.status_code == 200 and r.json()["evv"]["status"] == "confirmed" and r.json()["settlement_month"]


async def test_one_caregiver_in_two_places_at_once_is_an_exception(orders, settings):
    oid, provider, caregiver, t = await worked_order(orders, settings)
    cg = t["caregiver"]
    r = await orders.post(f"/v1/orders/{oid}/check-in", headers=cg,
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5, "time": at(30)})
    assert r.json()["evv"]["exceptions"] == []
    second = (await place(orders, t["county"], t["rid"], provider)).json()["id"]
    await orders.post(f"/v1/orders/{second}/accept", headers=t["provider"])
    await orders.post(f"/v1/orders/{second}/assign", headers=t["provider"], json={"caregiver_id": caregiver})
    r = await orders.post(f"/v1/orders/{second}/check-in", headers=cg,
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5})
    assert "caregiver_in_two_places" in r.json()["evv"]["exceptions"]


async def test_each_role_sees_only_its_own_orders(orders, settings):
    oid, provider, caregiver, t = await worked_order(orders, settings)
    other_provider = await new_provider(orders, settings)
    other = token_for(settings, "provider", provider_id=other_provider)
    assert (await orders.get(f"/v1/orders/{oid}", headers=other)).status_code == 404
    assert (await orders.post(f"/v1/orders/{oid}/cancel", headers=other, json={"reason": "no no"})).status_code == 403
    qingfeng = token_for(settings, "county", "410922")
    assert (await orders.get(f"/v1/orders/{oid}", headers=qingfeng)).status_code == 404
    assert (await orders.get("/v1/orders", headers=token_for(settings, "viewer"))).status_code == 403
    listed = (await orders.get("/v1/orders", headers=t["caregiver"])).json()["orders"]
    assert [o["id"] for o in listed] == [oid]
    listed = (await orders.get("/v1/orders", headers=other)).json()["orders"]
    assert listed == []
    page = (await orders.get("/v1/orders", headers=t["county"], params={"limit": 1})).json()
    assert len(page["orders"]) == 1 and page["next_cursor"]
    nxt = await orders.get("/v1/orders", headers=t["county"], params={"limit": 1, "cursor": page["next_cursor"]})
    assert nxt.status_code == 200 and nxt.json()["orders"][0]["id"] != page["orders"][0]["id"]
    forged = page["next_cursor"][:-2] + ("AA" if not page["next_cursor"].endswith("AA") else "BB")
    r = await orders.get("/v1/orders", headers=t["county"], params={"cursor": forged})
    assert r.status_code == 422 and r.json()["field"] == "cursor"
    r = await orders.post("/v1/caregivers", headers=t["county"], json={"provider_id": provider, "name": "李\u0000"})
    assert r.status_code in (400, 422) and r.json()["field"] != "", r.text


async def test_concurrent_orders_spend_a_budget_exactly_and_never_beyond_it(orders, settings):
    import asyncio

    county_code = "410923"  # 南乐县: only this test sets its policy
    r = await orders.post("/v1/policies", headers=token_for(settings, "city"), json={
        "scope": county_code, "effective_from": "2020-01-01",
        "benefits": [{"code": "all", "name": "全额", "source": "government", "share_pct": 100,
                      "monthly_cap_fen": 10**9, "when": {}}],
        "budgets": {"government": 10000, "collective": 0, "social": 0}})
    assert r.status_code == 201, r.text
    provider = await new_provider(orders, settings, county=county_code, capacity=1000)
    rids = [await new_resident(orders, settings, county_code=county_code) for _ in range(6)]
    county = token_for(settings, "county", county_code)
    answers = await asyncio.gather(*(place(orders, county, rids[i % 6], provider) for i in range(12)))
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers if a.status_code != 201]
    paid = sorted(a.json()["funding"]["government_fen"] for a in answers)
    assert sum(paid) == 10000 and paid[-1] == 4000 and paid.count(0) >= 9
    budgets = (await orders.get("/v1/budgets", params={"county": county_code}, headers=county)).json()
    government = budgets["counties"][0]["sources"][0]
    assert (government["spent_fen"], government["left_fen"]) == (10000, 0)
