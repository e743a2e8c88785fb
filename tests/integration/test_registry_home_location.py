"""The resident's home location (home_lat/home_lon, WGS-84) in the registry: the API, the county
import, the ingest gateway's upserts and the resident events that carry it to orders — against the
real database and broker."""

from __future__ import annotations

import orjson

from shared.events import CloudEvent, parse_data
from tests.conftest import fresh_id_number
from tests.integration.support import json_records, read_topic
from tests.integration.test_registry_import import CHINESE, ENGLISH, csv_bytes, import_file, person, residents_of
from tests.integration.test_registry_ingest import event

RESIDENTS_TOPIC = "eldercare.registry.residents.v1"
HOME = {"home_lat": 35.709512, "home_lon": 115.030641}
LOCATED = ENGLISH + ["home_lat", "home_lon"]


def body(**over) -> dict:
    return {"name": "周秀珍", "id_number": fresh_id_number(), "county_code": "410928", "township": "城关镇",
            "village": "东街社区", "living_arrangement": "alone", **over}


async def snapshots_of(settings, rid: str, expect: int) -> list[dict]:
    records = await read_topic(settings.kafka_bootstrap_servers, RESIDENTS_TOPIC, idle=2.0)
    mine = [data for _, data in json_records(records) if data.get("subject") == rid]
    assert len(mine) >= expect, mine
    return [parse_data(CloudEvent.model_validate(e)).resident.model_dump() for e in mine]


async def test_api_registers_reads_and_patches_the_home_location_and_its_events_carry_it(registry, settings,
                                                                                        puyang):
    created = await registry.post("/v1/residents", headers=puyang, json=body(**HOME))
    assert created.status_code == 201, created.text
    resident = created.json()
    assert (resident["home_lat"], resident["home_lon"]) == (HOME["home_lat"], HOME["home_lon"])
    rid = resident["id"]
    read = await registry.get(f"/v1/residents/{rid}", headers=puyang)
    assert read.json()["home_lat"] == HOME["home_lat"]

    moved = await registry.patch(f"/v1/residents/{rid}", headers={**puyang, "If-Match": read.headers["etag"]},
                                 json={"home_lat": 35.7125, "home_lon": 115.0299})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["home_lat"], moved.json()["home_lon"], moved.json()["version"]) == (35.7125, 115.0299, 2)

    snapshots = await snapshots_of(settings, rid, 2)
    assert [(s["version"], s["home_lat"], s["home_lon"]) for s in snapshots[:2]] == [
        (1, HOME["home_lat"], HOME["home_lon"]), (2, 35.7125, 115.0299)]

    # Cleared with both null; the next snapshot then carries none.
    cleared = await registry.patch(f"/v1/residents/{rid}", headers={**puyang, "If-Match": moved.headers["etag"]},
                                   json={"home_lat": None, "home_lon": None})
    assert cleared.status_code == 200 and cleared.json()["home_lat"] is None


async def test_bad_home_locations_are_refused_naming_the_field(registry, puyang):
    for bad, field in (({"home_lat": 95.0, "home_lon": 115.03}, "home_lat"),
                       ({"home_lat": 35.7, "home_lon": -181}, "home_lon"),
                       ({"home_lat": 35.7}, "home_lon"), ({"home_lon": 115.03}, "home_lat")):
        response = await registry.post("/v1/residents", headers=puyang, json=body(**bad))
        assert response.status_code == 422, (bad, response.text)
        assert field in response.text
    created = (await registry.post("/v1/residents", headers=puyang, json=body())).json()
    assert created["home_lat"] is None
    etag = (await registry.get(f"/v1/residents/{created['id']}", headers=puyang)).headers["etag"]
    half = await registry.patch(f"/v1/residents/{created['id']}", headers={**puyang, "If-Match": etag},
                                json={"home_lat": 35.7})
    assert half.status_code == 422 and half.json()["field"] == "home_lon"
    nan = await registry.patch(f"/v1/residents/{created['id']}",
                               headers={**puyang, "If-Match": etag, "Content-Type": "application/json"},
                               content=b'{"home_lat": NaN, "home_lon": 115.0}')
    assert nan.status_code == 422
    assert (await registry.get(f"/v1/residents/{created['id']}", headers=puyang)).json()["version"] == 1


async def test_import_takes_the_location_in_chinese_or_english_headers_and_keeps_it_when_a_file_has_none(
        registry, settings, puyang):
    located = person(**{"home_lat": "35.709512", "home_lon": "115.030641"})
    zh = CHINESE + ["住址纬度", "住址经度"]
    job = await import_file(registry, puyang, csv_bytes([located], headers=zh, fields=LOCATED))
    assert (job["status"], job["accepted"]) == ("succeeded", 1), job
    stored = (await residents_of(settings, [located["id_number"]]))[located["id_number"]]
    assert (stored["home_lat"], stored["home_lon"]) == (35.709512, 115.030641)
    # The same person in a file without the location columns changes nothing ...
    again = await import_file(registry, puyang, csv_bytes([located]))
    assert (again["unchanged"], again["updated"]) == (1, 0), again
    # ... a new location in English headers updates both coordinates.
    moved = await import_file(registry, puyang, csv_bytes([{**located, "home_lat": "35.7101", "home_lon": "115.0312"}],
                                                          headers=LOCATED, fields=LOCATED))
    assert moved["updated"] == 1, moved
    stored = (await residents_of(settings, [located["id_number"]]))[located["id_number"]]
    assert (stored["home_lat"], stored["home_lon"], stored["version"]) == (35.7101, 115.0312, 2)
    # A half location is a row error naming its column, Chinese first.
    half = await import_file(registry, puyang, csv_bytes([person(home_lat="35.7")], headers=zh, fields=LOCATED))
    assert half["rejected"] == 1
    report = (await registry.get(half["links"]["errors"], params={"format": "json"}, headers=puyang)).json()
    [error] = report["items"]
    assert error["column"] == "住址经度" and error["message"].startswith("住址经度")


async def test_county_upserts_set_the_location_and_one_without_it_keeps_it(registry, settings, puyang):
    id_number = fresh_id_number()
    record = {"name": "孙玉兰", "county_code": "410928", "township": "城关镇", "village": "东街社区",
              "living_arrangement": "空巢", "id_number": id_number, **HOME}
    first = await registry.post("/v1/events", headers=puyang,
                                json=[event("eldercare.county.resident.upserted.v1", record)])
    assert first.json()["accepted"] == 1, first.text
    rid = first.json()["results"][0]["resident_id"]
    without = {k: v for k, v in record.items() if not k.startswith("home_")}
    kept = await registry.post("/v1/events", headers=puyang, json=[
        event("eldercare.county.resident.upserted.v1", {**without, "living_arrangement": "alone"})])
    assert kept.json()["accepted"] == 1
    resident = (await registry.get(f"/v1/residents/{rid}", headers=puyang)).json()
    assert (resident["living_arrangement"], resident["home_lat"], resident["version"]) == (
        "alone", HOME["home_lat"], 2)
    bad = await registry.post("/v1/events", headers=puyang, json=[
        event("eldercare.county.resident.upserted.v1", {**record, "home_lat": 135.0})])
    assert bad.status_code == 422 and bad.json()["results"][0]["field"].startswith("data.home_lat")
    half = await registry.post("/v1/events", headers=puyang, json=[
        event("eldercare.county.resident.upserted.v1", {**without, "home_lon": 115.0})])
    assert half.status_code == 422 and half.json()["results"][0]["field"] == "data.home_lat"
    snapshots = await snapshots_of(settings, rid, 2)
    assert [s["home_lat"] for s in snapshots[:2]] == [HOME["home_lat"]] * 2
    assert orjson.dumps(snapshots[1])  # the updated event keeps carrying the stored location
