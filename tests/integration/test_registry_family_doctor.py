"""The family-doctor contract (家庭医生签约) through the registry, against the real database and
broker: the API (create, read, patch), the import template in Chinese and English, the county
ingest gateway's upserts, and the resident events that carry it."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import orjson

from services.registry.domain.imports import FIELD_LABELS_ZH
from services.registry.handlers import today_local
from tests.conftest import fresh_id_number
from tests.integration.support import fetchval
from tests.integration.test_registry_import import ENGLISH, csv_bytes, import_file, person

FIELDS = ENGLISH + ["family_doctor_contract", "family_doctor_signed_on"]


def body(**over) -> dict:
    return {"name": "王秀英", "id_number": fresh_id_number(), "county_code": "410928", "township": "城关镇",
            "village": "东街社区", "living_arrangement": "alone", **over}


async def last_event(settings, resident_id: str) -> dict:
    payload = await fetchval(settings.database_url, "registry",
                             "SELECT payload FROM outbox WHERE key = $1 ORDER BY id DESC LIMIT 1", resident_id)
    return orjson.loads(payload)


async def test_a_contract_and_its_date_are_registered_read_and_sent_in_the_event(registry, settings, puyang):
    created = await registry.post("/v1/residents", headers=puyang, json=body(
        family_doctor_contract=True, family_doctor_signed_on="2026-03-02"))
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    read = (await registry.get(f"/v1/residents/{rid}", headers=puyang)).json()
    assert (read["family_doctor_contract"], read["family_doctor_signed_on"]) == (True, "2026-03-02")
    event = await last_event(settings, rid)
    assert event["type"] == "eldercare.resident.registered.v1"
    resident = event["data"]["resident"]
    assert (resident["family_doctor_contract"], resident["family_doctor_signed_on"]) == (True, "2026-03-02")


async def test_a_resident_without_a_contract_is_sent_as_before(registry, settings, puyang):
    created = await registry.post("/v1/residents", headers=puyang, json=body())
    assert created.status_code == 201, created.text
    assert created.json()["family_doctor_contract"] is False and created.json()["family_doctor_signed_on"] is None
    resident = (await last_event(settings, created.json()["id"]))["data"]["resident"]
    assert "family_doctor_contract" not in resident and "family_doctor_signed_on" not in resident
    assert list(resident)[-1] == "version"


async def test_a_signing_date_without_a_contract_or_in_the_future_is_422_naming_the_date(registry, puyang):
    for extra in ({"family_doctor_signed_on": "2026-03-02"},
                  {"family_doctor_contract": False, "family_doctor_signed_on": "2026-03-02"},
                  {"family_doctor_contract": True,
                   "family_doctor_signed_on": (today_local() + timedelta(days=2)).isoformat()}):
        refused = await registry.post("/v1/residents", headers=puyang, json=body(**extra))
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "family_doctor_signed_on"


async def test_search_finds_the_65plus_still_without_a_contract(registry, puyang):
    village = f"签约村{uuid.uuid4().hex[:6]}"
    for year, contract in ((1950, True), (1951, False), (1963, False)):
        created = await registry.post("/v1/residents", headers=puyang, json=body(
            id_number=fresh_id_number("410928", year), village=village, family_doctor_contract=contract))
        assert created.status_code == 201, created.text
    found = await registry.post("/v1/residents/search", headers=puyang, json={
        "village": village, "age_min": 65, "family_doctor_contract": False})
    assert found.status_code == 200, found.text
    assert [(r["family_doctor_contract"], r["age"] >= 65) for r in found.json()["items"]] == [(False, True)]
    assert found.json()["total"] == 1


async def test_patching_signs_dates_and_ends_a_contract(registry, settings, puyang):
    created = await registry.post("/v1/residents", headers=puyang, json=body())
    rid, etag = created.json()["id"], created.headers["etag"]
    lonely_date = await registry.patch(f"/v1/residents/{rid}", json={"family_doctor_signed_on": "2026-05-01"},
                                       headers={**puyang, "If-Match": etag})
    assert lonely_date.status_code == 422 and lonely_date.json()["field"] == "family_doctor_signed_on"
    signed = await registry.patch(f"/v1/residents/{rid}", headers={**puyang, "If-Match": etag},
                                  json={"family_doctor_contract": True, "family_doctor_signed_on": "2026-05-01"})
    assert signed.status_code == 200, signed.text
    assert (signed.json()["family_doctor_signed_on"], signed.json()["version"]) == ("2026-05-01", 2)
    event = await last_event(settings, rid)
    assert event["type"] == "eldercare.resident.updated.v1"
    assert event["data"]["changed"] == ["family_doctor_contract", "family_doctor_signed_on"]
    assert event["data"]["resident"]["family_doctor_signed_on"] == "2026-05-01"
    future = await registry.patch(f"/v1/residents/{rid}", headers={**puyang, "If-Match": signed.headers["etag"]},
                                  json={"family_doctor_signed_on": (today_local() + timedelta(days=1)).isoformat()})
    assert future.status_code == 422 and future.json()["field"] == "family_doctor_signed_on"
    null = await registry.patch(f"/v1/residents/{rid}", headers={**puyang, "If-Match": signed.headers["etag"]},
                                json={"family_doctor_contract": None})
    assert null.status_code == 422 and null.json()["field"] == "family_doctor_contract"
    ended = await registry.patch(f"/v1/residents/{rid}", headers={**puyang, "If-Match": signed.headers["etag"]},
                                 json={"family_doctor_contract": False})
    assert ended.status_code == 200
    assert (ended.json()["family_doctor_contract"], ended.json()["family_doctor_signed_on"]) == (False, None)
    resident = (await last_event(settings, rid))["data"]["resident"]
    assert "family_doctor_contract" not in resident and "family_doctor_signed_on" not in resident


async def _resident_by_number(settings, id_number: str) -> tuple:
    row = await fetchval(settings.database_url, "registry",
                         "SELECT (id, family_doctor_contract, family_doctor_signed_on, version) FROM residents "
                         "WHERE id_number = $1", id_number)
    return tuple(row) if row is not None else None


async def test_the_import_template_takes_the_contract_in_chinese_and_in_english(registry, settings, puyang):
    signed, unsigned, undated = person(), person(), person()
    chinese = [FIELD_LABELS_ZH[f] for f in FIELDS]
    assert chinese[-2:] == ["家庭医生签约", "签约日期"]
    rows = [{**signed, "family_doctor_contract": "是", "family_doctor_signed_on": "2025/10/8"},
            {**unsigned, "family_doctor_contract": "否"}, {**undated, "family_doctor_contract": "已签约"},
            {**person(), "family_doctor_contract": "", "family_doctor_signed_on": "2025-10-08"},
            {**person(), "family_doctor_contract": "是", "family_doctor_signed_on": "2099-01-01"}]
    job = await import_file(registry, puyang, csv_bytes(rows, headers=chinese, fields=FIELDS))
    assert (job["status"], job["accepted"], job["rejected"]) == ("succeeded", 3, 2), job
    errors = (await registry.get(job["links"]["errors"], params={"format": "json"}, headers=puyang)).json()["items"]
    assert {e["column"] for e in errors} == {"签约日期"}
    assert any("家庭医生签约一栏应为“是”" in e["message"] for e in errors)
    assert any("在今天之后" in e["message"] for e in errors)
    rid, contract, signed_on, _ = await _resident_by_number(settings, signed["id_number"])
    assert (contract, signed_on) == (True, date(2025, 10, 8))
    assert (await _resident_by_number(settings, unsigned["id_number"]))[1:3] == (False, None)
    assert (await _resident_by_number(settings, undated["id_number"]))[1:3] == (True, None)
    event = await last_event(settings, str(rid))
    assert event["data"]["resident"]["family_doctor_signed_on"] == "2025-10-08"

    # English headers; an empty contract keeps the recorded one, a contract without a date keeps the
    # recorded date, a changed one is an update with its event.
    again = [{**signed, "phone": "13900000001", "family_doctor_contract": "yes"},
             {**unsigned, "family_doctor_contract": "yes",
                                                   "family_doctor_signed_on": "2025-11-01"}]
    job = await import_file(registry, puyang, csv_bytes(again, headers=FIELDS, fields=FIELDS))
    assert (job["status"], job["updated"], job["rejected"]) == ("succeeded", 2, 0), job
    assert (await _resident_by_number(settings, signed["id_number"]))[1:] == (True, date(2025, 10, 8), 2)
    rid2, *state = await _resident_by_number(settings, unsigned["id_number"])
    assert state == [True, date(2025, 11, 1), 2]
    event = await last_event(settings, str(rid2))
    assert event["data"]["changed"] == ["family_doctor_contract", "family_doctor_signed_on"]
    assert event["data"]["resident"]["family_doctor_contract"] is True
    # The same file again changes nothing.
    job = await import_file(registry, puyang, csv_bytes(again, headers=FIELDS, fields=FIELDS))
    assert (job["updated"], job["unchanged"]) == (0, 2), job


def ingest_event(data: dict) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "county/410928", "countycode": "410928",
            "type": "eldercare.county.resident.upserted.v1", "data": data}


async def test_county_upserts_set_keep_and_refuse_the_contract(registry, settings, puyang):
    record = {"name": "孙玉兰", "county_code": "410928", "township": "城关镇", "village": "东街社区",
              "living_arrangement": "空巢", "id_number": fresh_id_number()}
    first = await registry.post("/v1/events", headers=puyang, json=[ingest_event(
        {**record, "family_doctor_contract": True, "family_doctor_signed_on": "2026-02-14"})])
    assert first.json()["accepted"] == 1, first.text
    rid = first.json()["results"][0]["resident_id"]
    assert (await _resident_by_number(settings, record["id_number"]))[1:] == (True, date(2026, 2, 14), 1)
    # Not sent: kept (nothing changed, no new version).
    same = await registry.post("/v1/events", headers=puyang, json=[ingest_event(record)])
    assert same.json()["accepted"] == 1
    assert (await _resident_by_number(settings, record["id_number"]))[1:] == (True, date(2026, 2, 14), 1)
    # A contract without its date: the recorded date stays.
    undated = await registry.post("/v1/events", headers=puyang, json=[ingest_event(
        {**record, "family_doctor_contract": True})])
    assert undated.json()["accepted"] == 1
    assert (await _resident_by_number(settings, record["id_number"]))[1:] == (True, date(2026, 2, 14), 1)
    bad = await registry.post("/v1/events", headers=puyang, json=[ingest_event(
        {**record, "family_doctor_contract": False, "family_doctor_signed_on": "2026-02-14"})])
    assert bad.status_code == 422 and bad.json()["results"][0]["field"] == "data.family_doctor_signed_on"
    ended = await registry.post("/v1/events", headers=puyang, json=[ingest_event(
        {**record, "family_doctor_contract": False})])
    assert ended.json()["accepted"] == 1
    assert (await _resident_by_number(settings, record["id_number"]))[1:] == (False, None, 2)
    event = await last_event(settings, rid)
    assert event["type"] == "eldercare.resident.updated.v1"
    assert event["data"]["changed"] == ["family_doctor_contract", "family_doctor_signed_on"]
