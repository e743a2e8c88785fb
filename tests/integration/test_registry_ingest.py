"""The county ingest gateway against the real database and broker."""

from __future__ import annotations

import asyncio
import uuid

import orjson

from tests.conftest import fresh_id_number, token_for
from tests.integration.support import json_records, read_topic

INGEST_TOPIC = "eldercare.registry.ingest.v1"



async def a_resident(registry, headers, county="410928") -> tuple[str, str]:
    id_number = fresh_id_number()
    response = await registry.post("/v1/residents", headers=headers, json={
        "name": "赵桂兰", "id_number": id_number, "county_code": county, "township": "城关镇",
        "village": "东街社区", "living_arrangement": "alone"})
    assert response.status_code == 201, response.text
    return response.json()["id"], id_number


def event(type_: str, data: dict, *, subject: str | None = None, county: str = "410928", **extra) -> dict:
    e = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}", "type": type_,
         "countycode": county, "data": data, **extra}
    if subject:
        e["subject"] = subject
    return e


async def test_batch_is_validated_per_event_and_accepted_ones_reach_the_ingest_topic(registry, settings, puyang):
    rid, id_number = await a_resident(registry, puyang)
    facility_id = f"F-{uuid.uuid4()}"  # the ingest topic is shared with other tests
    sos = event("eldercare.county.device.sos.v1", {"device_id": "SOS-1", "lat": 35.7, "lon": 115.0}, subject=rid)
    by_number = event("eldercare.county.device.vitals.v1", {"device_id": "BAND-1", "heart_rate": 130,
                                                            "id_number": id_number})
    facility = event("eldercare.county.facility.reported.v1", {"facility_id": facility_id, "facility_type": "township_home",
                                                               "name": "柳屯镇敬老院", "beds": 100, "nursing_beds": 60,
                                                               "occupied": 70})
    bad_data = event("eldercare.county.device.vitals.v1", {"device_id": "BAND-2", "spo2": 140}, subject=rid)
    bad_type = event("eldercare.county.weather.v1", {}, subject=rid)
    other_county = event("eldercare.county.device.sos.v1", {"device_id": "X"}, subject=rid, county="410922")
    unknown = event("eldercare.county.device.sos.v1", {"device_id": "X"}, subject=str(uuid.uuid4()))
    response = await registry.post("/v1/events", headers=puyang,
                                   json=[sos, by_number, facility, bad_data, bad_type, other_county, unknown])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (3, 0, 4)
    reasons = {r["index"]: r for r in body["results"]}
    assert reasons[3]["field"] == "data.spo2"
    assert reasons[4]["field"] == "type"
    assert reasons[5]["field"] == "countycode" and "not your county" in reasons[5]["reason"]
    assert reasons[6]["field"] == "subject"

    records = await read_topic(settings.kafka_bootstrap_servers, INGEST_TOPIC, idle=3)
    forwarded = [e for _, e in json_records(records)]
    mine = [e for e in forwarded if e["source"] == "county/410928" and e.get("subject") == rid
            and e["data"].get("device_id") in ("SOS-1", "BAND-1") or e["data"].get("facility_id") == facility_id]
    assert len(mine) == 3
    # BAND-1 came by ID number only: the gateway resolved it to the resident's id.
    assert sorted(str(e["data"].get("device_id")) for e in mine) == ["BAND-1", "None", "SOS-1"]
    assert id_number not in orjson.dumps(forwarded).decode()
    assert {r.key for r, e in json_records(records) if e["data"].get("device_id") == "SOS-1"
            and e.get("subject") == rid} == {rid.encode()}


async def test_retried_batch_is_reported_duplicate_and_forwarded_once(registry, settings, puyang):
    rid, _ = await a_resident(registry, puyang)
    batch = [event("eldercare.county.device.activity.v1", {"device_id": f"DOOR-{i}", "kind": "door"}, subject=rid)
             for i in range(5)]
    first = await registry.post("/v1/events", headers=puyang, json=batch)
    again = await registry.post("/v1/events", headers=puyang, json=batch)
    assert first.json()["accepted"] == 5
    assert again.json()["duplicate"] == 5 and again.json()["accepted"] == 0
    records = await read_topic(settings.kafka_bootstrap_servers, INGEST_TOPIC, idle=3)
    forwarded = [orjson.loads(r.value) for r in records if r.key == rid.encode()]
    assert len({e["id"] for e in forwarded}) == 5
    # One resident's events reach the topic in the order they were posted.
    assert [e["data"]["device_id"] for e in forwarded] == [f"DOOR-{i}" for i in range(5)]


async def test_ndjson_is_accepted(registry, puyang):
    rid, _ = await a_resident(registry, puyang)
    lines = b"\n".join(orjson.dumps(event("eldercare.county.visit.logged.v1", {
        "visitor": "网格员", "kind": "phone", "at": "2026-11-20T10:00:00+08:00"}, subject=rid)) for _ in range(3))
    response = await registry.post("/v1/events", content=lines,
                                   headers={**puyang, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 200 and response.json()["accepted"] == 3


async def test_resident_upserted_registers_then_updates_then_changes_nothing(registry, puyang):
    id_number = fresh_id_number()
    record = {"name": "孙玉兰", "county_code": "410928", "township": "城关镇", "village": "东街社区",
              "living_arrangement": "空巢", "categories": ["低保"], "id_number": id_number}
    first = await registry.post("/v1/events", headers=puyang,
                                json=[event("eldercare.county.resident.upserted.v1", record)])
    assert first.json()["accepted"] == 1, first.text
    rid = first.json()["results"][0]["resident_id"]
    changed = await registry.post("/v1/events", headers=puyang, json=[
        event("eldercare.county.resident.upserted.v1", {**record, "living_arrangement": "alone"})])
    assert changed.json()["accepted"] == 1
    resident = (await registry.get(f"/v1/residents/{rid}", headers=puyang)).json()
    assert resident["living_arrangement"] == "alone" and resident["version"] == 2
    qingfeng = token_for(registry_settings(registry), "county", "410922")
    stolen = await registry.post("/v1/events", headers=qingfeng, json=[
        event("eldercare.county.resident.upserted.v1", {**record, "county_code": "410922"}, county="410922")])
    # Refused, without saying which county holds the number (the gateway is no register oracle).
    assert stolen.status_code == 422 and stolen.json()["results"][0]["field"] == "data.id_number"
    assert "410928" not in stolen.text


def registry_settings(registry):
    return registry.app.state.settings


async def test_family_bed_marks_the_resident(registry, puyang):
    rid, _ = await a_resident(registry, puyang)
    response = await registry.post("/v1/events", headers=puyang,
                                   json=[event("eldercare.county.family_bed.established.v1", {}, subject=rid)])
    assert response.json()["accepted"] == 1
    assert (await registry.get(f"/v1/residents/{rid}", headers=puyang)).json()["family_bed"] is True


async def test_bad_requests_get_clear_4xx(registry, settings, puyang):
    assert (await registry.post("/v1/events", headers={**puyang, "Content-Type": "application/json"},
                                content=b"[{")).status_code == 400
    too_many = [event("eldercare.county.training.recorded.v1", {"course": "c", "trainees": 1}) for _ in range(1001)]
    response = await registry.post("/v1/events", headers=puyang, json=too_many)
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"
    assert (await registry.post("/v1/events", headers=puyang, json={"not": "an event"})).status_code == 422
    negative = await registry.post("/v1/events", headers=puyang, json=[
        event("eldercare.county.training.recorded.v1", {"course": "c", "trainees": -3})])
    assert negative.status_code == 422 and negative.json()["field"] == "data.trainees"
    outside = await registry.post("/v1/events", headers=puyang, json=[
        event("eldercare.county.training.recorded.v1", {"course": "c", "trainees": 3}, county="410922")])
    assert outside.status_code == 403 and outside.json()["field"] == "countycode"
    viewer = token_for(settings, "viewer")
    assert (await registry.post("/v1/events", headers=viewer, json=[])).status_code == 403
    assert (await registry.post("/v1/events", json=[])).status_code == 401


async def test_an_empty_batch_is_refused_not_a_server_error(registry, puyang):
    response = await registry.post("/v1/events", headers=puyang, json=[])
    assert response.status_code == 422 and response.json()["field"] == "body"


async def test_an_event_repeated_within_one_batch_counts_once(registry, settings, puyang):
    rid, _ = await a_resident(registry, puyang)
    door = event("eldercare.county.device.activity.v1", {"device_id": "DOOR-R", "kind": "door"}, subject=rid)
    response = await registry.post("/v1/events", headers=puyang, json=[door, door])
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "duplicate"]
    records = await read_topic(settings.kafka_bootstrap_servers, INGEST_TOPIC, idle=3)
    assert len([r for r in records if r.key == rid.encode()]) == 1


async def test_schema_valid_events_are_still_judged_one_by_one(registry, qingfeng, puyang):
    """A batch whose events all pass their schemas takes the one-pass path; county, resident and
    ID number are still checked per event, and the ID number is resolved."""
    rid, id_number = await a_resident(registry, puyang)
    batch = [
        event("eldercare.county.device.fall.v1", {"device_id": "F-1", "confidence": 0.9},
              subject=rid.upper()),
        event("eldercare.county.device.fall.v1", {"device_id": "F-2", "id_number": id_number}),
        event("eldercare.county.device.fall.v1", {"device_id": "F-3"}, subject=str(uuid.uuid4())),
        event("eldercare.county.device.fall.v1", {"device_id": "F-4"}, subject=rid, county="410922"),
        event("eldercare.county.device.fall.v1", {"device_id": "F-5"}, subject="not-a-resident-id"),
    ]
    body = (await registry.post("/v1/events", headers=puyang, json=batch)).json()
    assert [r["status"] for r in body["results"]] == ["accepted"] * 2 + ["rejected"] * 3
    assert [r.get("field") for r in body["results"][2:]] == ["subject", "countycode", "subject"]
    # Another county's token sees the resident as unknown: the same words, nothing leaks.
    other = await registry.post("/v1/events", headers=qingfeng, json=[
        event("eldercare.county.device.fall.v1", {"device_id": "F-6"}, subject=rid, county="410922")])
    assert other.status_code == 422
    assert other.json()["results"][0]["reason"].startswith("subject: no resident")


async def test_ndjson_with_a_broken_line_names_the_line(registry, puyang):
    rid, _ = await a_resident(registry, puyang)
    good = orjson.dumps(event("eldercare.county.device.activity.v1", {"device_id": "D", "kind": "door"},
                              subject=rid))
    response = await registry.post("/v1/events", content=good + b"\n{not json\n" + good,
                                   headers={**puyang, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 400 and response.json()["field"] == "body[line 2]"


async def test_text_postgresql_cannot_store_is_rejected_not_a_server_error(registry, puyang):
    rid, _ = await a_resident(registry, puyang)
    nul_id = event("eldercare.county.device.sos.v1", {"device_id": "X"}, subject=rid, id="a\u0000b")
    nul_key = event("eldercare.county.facility.reported.v1", {
        "facility_id": "F\u0000", "facility_type": "township_home", "name": "n", "beds": 1, "nursing_beds": 0,
        "occupied": 0})
    response = await registry.post("/v1/events", headers=puyang, json=[nul_id, nul_key])
    assert response.status_code == 422
    assert [r["field"] for r in response.json()["results"]] == ["id", "data.facility_id"]


async def test_concurrent_retries_in_any_order_take_effect_once(registry, puyang):
    rid, _ = await a_resident(registry, puyang)
    batch = [event("eldercare.county.device.activity.v1", {"device_id": f"M-{i}", "kind": "motion"},
                   subject=rid) for i in range(50)]
    responses = await asyncio.gather(*(registry.post("/v1/events", headers=puyang, json=b)
                                       for b in (batch, batch[::-1], batch, batch[::-1])))
    assert [r.status_code for r in responses] == [200] * 4
    assert sum(r.json()["accepted"] for r in responses) == 50
    assert sum(r.json()["duplicate"] for r in responses) == 150


async def test_one_countys_events_never_make_anothers_with_the_same_ids_duplicate(registry, settings, puyang,
                                                                                   qingfeng):
    # Qingfeng posts first, with the ids Puyang will use, even under Puyang's own source string.
    a_rid, _ = await a_resident(registry, puyang, "410928")
    b_rid, _ = await a_resident(registry, qingfeng, "410922")
    tag = uuid.uuid4().hex[:8]
    ids = [f"evt-{tag}-{i}" for i in range(3)]

    def batch(county: str, rid: str) -> list[dict]:
        events = [event("eldercare.county.device.sos.v1", {"device_id": f"SOS-{tag}-{county}-{i}"}, subject=rid,
                        county=county, id=ids[i], source="county/410928") for i in range(2)]
        events.append(event("eldercare.county.facility.reported.v1", {
            "facility_id": f"F-{tag}", "facility_type": "township_home", "name": "敬老院", "beds": 10,
            "nursing_beds": 5, "occupied": 3}, county=county, id=ids[2], source="county/410928"))
        return events

    first = await registry.post("/v1/events", headers=qingfeng, json=batch("410922", b_rid))
    second = await registry.post("/v1/events", headers=puyang, json=batch("410928", a_rid))
    assert first.json()["accepted"] == 3, first.text
    assert second.json()["accepted"] == 3 and second.json()["duplicate"] == 0, second.text
    # Each county's own retry is still a repeat.
    again = await registry.post("/v1/events", headers=puyang, json=batch("410928", a_rid))
    assert again.json()["duplicate"] == 3

    records = await read_topic(settings.kafka_bootstrap_servers, INGEST_TOPIC, idle=3)
    forwarded = [e for _, e in json_records(records)]
    sos = [e for e in forwarded if e["data"].get("device_id", "").startswith(f"SOS-{tag}-")]
    facilities = [e for e in forwarded if e["data"].get("facility_id") == f"F-{tag}"]
    assert sorted(e["countycode"] for e in sos) == ["410922", "410922", "410928", "410928"]
    assert sorted(e["countycode"] for e in facilities) == ["410922", "410928"]
    # Distinct forwarded ids: a consumer's inbox would otherwise drop the second county's event.
    assert len({e["id"] for e in sos + facilities}) == 6


async def test_the_gateway_tells_a_county_nothing_of_another_countys_residents(registry, puyang, city):
    """The gateway resolves residents by ID number: another county's resident answers exactly like a
    number nobody registered (the field named, no county), and an upsert of another county's
    number is refused without saying where it is registered, with an audit row (a probe of the
    city-wide register leaves a trace)."""
    _, theirs = await a_resident(registry, puyang)  # registered by Puyang (410928)
    nobodys = fresh_id_number()
    platform = f"platform:qingfeng-{uuid.uuid4().hex[:8]}"
    qingfeng = token_for(registry_settings(registry), "county", "410922", subject=platform)

    def vitals(number: str) -> dict:
        return event("eldercare.county.device.vitals.v1", {"device_id": "BAND-9", "heart_rate": 80,
                                                           "id_number": number}, county="410922")

    answers = [(await registry.post("/v1/events", headers=qingfeng, json=[vitals(n)])) for n in (theirs, nobodys)]
    assert [a.status_code for a in answers] == [422, 422]
    bodies = [a.json() for a in answers]
    for body in bodies:
        body.pop("instance", None)
        body["results"][0].pop("id")
    assert bodies[0] == bodies[1], bodies
    assert bodies[0]["field"] == "data.id_number" and "410928" not in answers[0].text

    record = {"name": "孙玉兰", "county_code": "410922", "township": "城关镇", "village": "东街社区",
              "living_arrangement": "空巢", "id_number": theirs}
    upsert = await registry.post("/v1/events", headers=qingfeng,
                                 json=[event("eldercare.county.resident.upserted.v1", record, county="410922")])
    assert upsert.status_code == 422
    verdict = upsert.json()["results"][0]
    assert verdict["status"] == "rejected" and verdict["field"] == "data.id_number"
    assert "410928" not in upsert.text and "濮阳" not in upsert.text and theirs not in upsert.text

    audit = (await registry.get("/v1/audit", params={"actor": platform}, headers=city)).json()["items"]
    assert [(e["action"], e["role"], e["county_code"], e["resident_id"]) for e in audit] == [
        ("ingest_id_number_conflict", "county", "410922", None)], audit
    assert len(audit[0]["id_number_hash"]) == 64 and theirs not in str(audit)
