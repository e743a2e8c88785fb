"""Registry residents through the HTTP API, against the real database and broker."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.conftest import fresh_id_number, token_for
from tests.integration.support import read_topic

RESIDENTS_TOPIC = "eldercare.registry.residents.v1"


def resident_body(**over) -> dict:
    body = {"name": "王秀英", "id_number": fresh_id_number(), "phone": "13812345678", "county_code": "410928",
            "township": "城关镇", "village": "东街社区", "living_arrangement": "独居",
            "categories": ["低保", "重残"], "ability_level": 1, "emergency_contact": "李建国",
            "emergency_phone": "13987654321"}
    body.update(over)
    return body





async def register(registry, headers, **over):
    body = resident_body(**over)
    body["categories"] = ["minimum_allowance", "severe_disability"] if over.get("categories") is None else over["categories"]
    body["living_arrangement"] = over.get("living_arrangement", "alone")
    response = await registry.post("/v1/residents", json=body, headers=headers)
    return body, response


async def test_register_derives_birth_gender_and_masks_numbers(registry, puyang):
    body, response = await register(registry, puyang)
    assert response.status_code == 201, response.text
    resident = response.json()
    assert resident["id_number"] != body["id_number"]
    assert resident["id_number"][:6] == body["id_number"][:6] and "********" in resident["id_number"]
    assert resident["phone"] == "138****5678"
    # Masked, the age is all of the birth date shown (the year beside it would narrow it further).
    assert resident["birth_date"] is None and resident["birth_year"] is None and resident["age"] >= 60
    assert resident["gender"] == ("male" if int(body["id_number"][16]) % 2 else "female")
    assert resident["masked"] is True
    assert response.headers["etag"]


async def test_second_county_registering_same_id_gets_conflict_naming_owner_only(registry, puyang, qingfeng):
    body, first = await register(registry, puyang)
    assert first.status_code == 201
    again = await registry.post("/v1/residents", json={**body, "county_code": "410922", "name": "另一个名字"},
                                headers=qingfeng)
    assert again.status_code == 409
    problem = again.json()
    assert problem["owner_county"] == "410928" and problem["field"] == "id_number"
    assert "王秀英" not in again.text and first.json()["id"] not in again.text


@pytest.mark.parametrize("field,value,fragment", [
    ("id_number", "410928194103150021", "check character"),
    ("id_number", "410928194102300028", "date"),
    ("id_number", "990928194103150025", "region"),
    ("county_code", "999999", "county code"),
    ("living_arrangement", "sometimes", "living arrangement"),
    ("categories", ["rich"], "category"),
    ("phone", "12", "phone"),
])
async def test_bad_fields_get_422_naming_the_field(registry, city, field, value, fragment):
    body = resident_body(**{field: value})
    response = await registry.post("/v1/residents", json=body, headers=city)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == field
    assert fragment in problem["detail"].lower()


async def test_unknown_field_and_wrong_type_get_422(registry, city):
    response = await registry.post("/v1/residents", json={**resident_body(), "shoe_size": 42}, headers=city)
    assert response.status_code == 422 and response.json()["field"] == "shoe_size"
    response = await registry.post("/v1/residents", json={**resident_body(), "ability_level": "high"}, headers=city)
    assert response.status_code == 422 and response.json()["field"] == "ability_level"


async def test_county_cannot_register_or_read_in_another_county(registry, puyang, qingfeng):
    response = await registry.post("/v1/residents", json=resident_body(county_code="410922"), headers=puyang)
    assert response.status_code == 403
    _, created = await register(registry, puyang)
    rid = created.json()["id"]
    assert (await registry.get(f"/v1/residents/{rid}", headers=qingfeng)).status_code == 403
    assert (await registry.get(f"/v1/residents/{rid}", headers=puyang)).status_code == 200
    assert (await registry.get(f"/v1/residents/{uuid.uuid4()}", headers=puyang)).status_code == 404


async def test_viewer_never_sees_personal_data(registry, settings, puyang):
    _, created = await register(registry, puyang)
    viewer = token_for(settings, "viewer")
    assert (await registry.get(f"/v1/residents/{created.json()['id']}", headers=viewer)).status_code == 403
    assert (await registry.post("/v1/residents/search", json={}, headers=viewer)).status_code == 403


async def test_unmasked_read_needs_a_reason_and_is_audited(registry, puyang, city):
    body, created = await register(registry, puyang)
    rid = created.json()["id"]
    assert (await registry.get(f"/v1/residents/{rid}?reveal=true", headers=puyang)).status_code == 400
    clear = await registry.get(f"/v1/residents/{rid}", params={"reveal": "true", "reason": "联系家属确认走访时间"},
                               headers=puyang)
    assert clear.status_code == 200
    assert clear.json()["id_number"] == body["id_number"] and clear.json()["phone"] == "13812345678"
    audit = await registry.get(f"/v1/audit?resident_id={rid}", headers=city)
    entries = audit.json()["items"]
    assert len(entries) == 1 and entries[0]["reason"] == "联系家属确认走访时间"
    assert entries[0]["actor"] == "county:410928" and "id_number" in entries[0]["fields"]
    assert (await registry.get("/v1/audit", headers=puyang)).status_code == 403


async def test_reveal_parameters_are_checked_and_the_header_carries_a_reason(registry, puyang):
    from urllib.parse import quote

    body, created = await register(registry, puyang)
    rid = created.json()["id"]
    bad = await registry.get(f"/v1/residents/{rid}", params={"reveal": "maybe"}, headers=puyang)
    assert bad.status_code == 422 and bad.json()["field"] == "reveal"
    long = await registry.get(f"/v1/residents/{rid}", params={"reveal": "1", "reason": "x" * 501}, headers=puyang)
    assert long.status_code == 422 and long.json()["field"] == "reason"
    by_header = await registry.get(f"/v1/residents/{rid}?reveal=yes",
                                   headers={**puyang, "X-Access-Reason": quote("核对补贴发放名单")})
    assert by_header.status_code == 200 and by_header.json()["id_number"] == body["id_number"]
    masked = await registry.get(f"/v1/residents/{rid}?reveal=false", headers=puyang)
    assert masked.json()["masked"] is True and masked.json()["id_number"] != body["id_number"]
    spec = (await registry.get("/openapi.json")).json()
    listed = {p["name"] for p in spec["paths"]["/v1/residents/{resident_id}"]["get"]["parameters"]}
    assert {"resident_id", "reveal", "reason", "X-Access-Reason"} <= listed


async def test_patch_needs_if_match_and_a_stale_version_gets_412(registry, puyang):
    _, created = await register(registry, puyang)
    rid, etag = created.json()["id"], created.headers["etag"]
    assert (await registry.patch(f"/v1/residents/{rid}", json={"village": "西街社区"}, headers=puyang)).status_code == 428
    ok = await registry.patch(f"/v1/residents/{rid}", json={"village": "西街社区", "categories": ["低收入"]},
                              headers={**puyang, "If-Match": etag})
    assert ok.status_code == 200, ok.text
    assert ok.json()["village"] == "西街社区" and ok.json()["categories"] == ["low_income"]
    stale = await registry.patch(f"/v1/residents/{rid}", json={"village": "北街社区"},
                                 headers={**puyang, "If-Match": etag})
    assert stale.status_code == 412
    assert (await registry.patch(f"/v1/residents/{rid}", json={"county_code": "410922"},
                                 headers={**puyang, "If-Match": ok.headers["etag"]})).status_code == 422


async def test_assessment_sets_level_and_keeps_history(registry, puyang):
    _, created = await register(registry, puyang)
    rid = created.json()["id"]
    items = {f"B1.{i}": 4 for i in range(1, 9)} | {"B2.1": 4, "B2.2": 4, "B2.3": 4, "B2.4": 3} | {
        f"B3.{i}": 4 for i in range(1, 7)} | {"B3.7": 1, "B3.8": 1, "B3.9": 2} | {
        "B4.1": 2, "B4.2": 2, "B4.3": 4, "B4.4": 3, "B4.5": 4}
    items["B1.3"] = 0
    items["B2.4"] = 0  # 83 points: mild
    first = await registry.post(f"/v1/residents/{rid}/assessments", headers=puyang, json={
        "assessor": "李医生", "assessed_on": "2026-01-10", "reason": "first", "items": items})
    assert first.status_code == 201, first.text
    assert first.json()["assessment"]["total_score"] == 83 and first.json()["resident"]["ability_level"] == 1
    second = await registry.post(f"/v1/residents/{rid}/assessments", headers=puyang, json={
        "assessor": "李医生", "assessed_on": "2026-06-10", "reason": "routine", "level": 3})
    assert second.json()["resident"]["ability_level"] == 3
    history = (await registry.get(f"/v1/residents/{rid}/assessments", headers=puyang)).json()["items"]
    assert [h["level"] for h in history] == [1, 3]
    bad = await registry.post(f"/v1/residents/{rid}/assessments", headers=puyang, json={
        "assessor": "李医生", "assessed_on": "2026-06-10", "reason": "routine", "items": {**items, "B2.4": 9}})
    assert bad.status_code == 422 and bad.json()["field"] == "items.B2.4"


async def test_transfer_moves_visibility_to_the_receiving_county(registry, puyang, qingfeng):
    _, created = await register(registry, puyang)
    rid = created.json()["id"]
    moved = await registry.post(f"/v1/residents/{rid}/transfer", headers=puyang,
                                json={"to_county": "410922", "township": "城关镇", "village": "南街社区"})
    assert moved.status_code == 200, moved.text
    assert (await registry.get(f"/v1/residents/{rid}", headers=puyang)).status_code == 403
    assert (await registry.get(f"/v1/residents/{rid}", headers=qingfeng)).json()["county_code"] == "410922"


async def test_death_is_recorded_once(registry, puyang):
    _, created = await register(registry, puyang)
    rid = created.json()["id"]
    dead = await registry.post(f"/v1/residents/{rid}/death", headers=puyang, json={"date_of_death": "2026-11-01"})
    assert dead.status_code == 200 and dead.json()["status"] == "deceased"
    assert (await registry.post(f"/v1/residents/{rid}/death", headers=puyang,
                                json={"date_of_death": "2026-11-01"})).status_code == 409
    future = await registry.post(f"/v1/residents/{rid}/death", headers=puyang, json={"date_of_death": "2999-01-01"})
    assert future.status_code in (409, 422)


async def test_idempotency_key_replays_the_first_answer(registry, puyang):
    body = resident_body(living_arrangement="alone", categories=[])
    headers = {**puyang, "Idempotency-Key": str(uuid.uuid4())}
    first = await registry.post("/v1/residents", json=body, headers=headers)
    again = await registry.post("/v1/residents", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = await registry.post("/v1/residents", json={**body, "name": "别人"}, headers=headers)
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"


async def test_search_filters_count_paginate_and_look_up_by_id_number_in_body(registry, puyang, qingfeng, city):
    village = f"搜索村{uuid.uuid4().hex[:6]}"
    ids = []
    for i in range(5):
        body, response = await register(registry, puyang, village=village,
                                         living_arrangement="empty_nest" if i % 2 else "alone")
        ids.append(body["id_number"])
    page1 = await registry.post("/v1/residents/search", headers=puyang, json={"village": village, "limit": 3})
    data = page1.json()
    assert data["total"] == 5 and len(data["items"]) == 3 and data["next_cursor"]
    page2 = await registry.post("/v1/residents/search", headers=puyang,
                                json={"village": village, "limit": 3, "cursor": data["next_cursor"]})
    assert len(page2.json()["items"]) == 2 and page2.json()["next_cursor"] is None
    alone = await registry.post("/v1/residents/search", headers=puyang,
                                json={"village": village, "living_arrangement": "alone"})
    assert alone.json()["total"] == 3
    lookup = await registry.post("/v1/residents/search", headers=city,
                                 json={"id_number": ids[0], "reason": "核对补贴发放名单"})
    assert lookup.json()["total"] == 1 and ids[0] not in lookup.text
    other = await registry.post("/v1/residents/search", headers=qingfeng, json={"village": village})
    assert other.json()["total"] == 0
    assert (await registry.post("/v1/residents/search", headers=qingfeng,
                                json={"county_code": "410928"})).status_code == 403
    bad = await registry.post("/v1/residents/search", headers=city, json={"id_number": "123"})
    assert bad.status_code == 422 and bad.json()["field"] == "id_number"


async def test_every_change_emits_its_event_through_the_outbox(registry, settings, puyang):
    _, created = await register(registry, puyang)
    rid = created.json()["id"]
    etag = created.headers["etag"]
    await registry.patch(f"/v1/residents/{rid}", json={"address": "3号楼"}, headers={**puyang, "If-Match": etag})
    await registry.post(f"/v1/residents/{rid}/assessments", headers=puyang,
                        json={"assessor": "李医生", "assessed_on": "2026-02-01", "reason": "routine", "level": 2})
    await registry.post(f"/v1/residents/{rid}/death", headers=puyang, json={"date_of_death": "2026-11-02"})
    records = await read_topic(settings.kafka_bootstrap_servers, RESIDENTS_TOPIC, idle=3, timeout=60)
    mine = [orjson.loads(r.value) for r in records if r.key == rid.encode()]
    types = [e["type"] for e in mine]
    assert types == ["eldercare.resident.registered.v1", "eldercare.resident.updated.v1",
                     "eldercare.resident.assessed.v1", "eldercare.resident.deceased.v1"]
    assert all(e["countycode"] == "410928" and e["traceparent"] for e in mine)
    assert "id_number" not in orjson.dumps(mine).decode()
