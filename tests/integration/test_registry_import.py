"""Bulk imports through the registry's HTTP API, against the real database and broker: spreadsheets in
(CSV in UTF-8 and GB18030, XLSX), residents and their events out, the error report a clerk reads."""

from __future__ import annotations

import csv
import io
import uuid

import openpyxl
import orjson

from services.registry.domain.imports import FIELD_LABELS_ZH
from services.registry.importer import recover_interrupted_imports
from shared.db import connect
from shared.events import CloudEvent, parse_data
from shared.events.residents import ResidentRegistered, ResidentUpdated
from tests.conftest import fresh_id_number, token_for
from tests.integration.support import eventually, read_topic

RESIDENTS_TOPIC = "eldercare.registry.residents.v1"
ENGLISH = ["name", "id_number", "phone", "county_code", "township", "village", "address",
           "living_arrangement", "categories", "ability_level", "emergency_contact", "emergency_phone"]
CHINESE = [FIELD_LABELS_ZH[f] for f in ENGLISH]





def person(county: str = "410928", **over) -> dict:
    values = {"name": "王秀英", "id_number": fresh_id_number(), "phone": "13812345678", "county_code": county,
              "township": "城关镇", "village": "东街社区", "address": "东街3号", "living_arrangement": "独居",
              "categories": "低保;重残", "ability_level": "1", "emergency_contact": "李建国",
              "emergency_phone": "13987654321"}
    values.update(over)
    return values


def csv_bytes(people: list[dict], headers: list[str] = CHINESE, fields: list[str] = ENGLISH,
              encoding: str = "utf-8", extra: dict | None = None) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(headers + list(extra or {}))
    for p in people:
        writer.writerow([p.get(f, "") for f in fields] + list((extra or {}).values()))
    return buffer.getvalue().encode(encoding)


async def upload(registry, auth: dict, content: bytes, filename: str = "居民.csv", raw_type: str | None = None):
    if raw_type:
        return await registry.post("/v1/imports", params={"filename": filename}, content=content,
                                   headers={**auth, "Content-Type": raw_type})
    return await registry.post("/v1/imports", files={"file": (filename, content)}, headers=auth)


async def finished(registry, auth: dict, response, timeout: float = 60.0) -> dict:
    assert response.status_code == 202, response.text
    location = response.headers["location"]

    async def done() -> dict | None:
        job = (await registry.get(location, headers=auth)).json()
        return job if job["status"] in ("succeeded", "failed") else None

    return await eventually(done, timeout=timeout, interval=0.1, message="import finished")


async def import_file(registry, auth: dict, content: bytes, **kw) -> dict:
    return await finished(registry, auth, await upload(registry, auth, content, **kw))


async def db(settings):
    return await connect(settings.database_url, "registry")


async def residents_of(settings, id_numbers: list[str]) -> dict[str, dict]:
    conn = await db(settings)
    try:
        rows = await conn.fetch("SELECT * FROM residents WHERE id_number = ANY($1::text[])", id_numbers)
    finally:
        await conn.close()
    return {r["id_number"]: dict(r) for r in rows}


async def outbox_events(settings, resident_ids: list) -> list[CloudEvent]:
    conn = await db(settings)
    try:
        rows = await conn.fetch("SELECT payload FROM outbox WHERE key = ANY($1::text[]) ORDER BY id",
                                [str(r) for r in resident_ids])
    finally:
        await conn.close()
    return [CloudEvent.from_json(r["payload"]) for r in rows]


async def error_report(registry, auth: dict, job: dict) -> list[list[str]]:
    response = await registry.get(job["links"]["errors"], headers=auth)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to show Chinese
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


# ---------------------------------------------------------------- formats


async def test_utf8_csv_with_chinese_headers_and_words_registers_residents(registry, city, settings):
    people = [person(), person(living_arrangement="空巢", categories="特困分散供养", ability_level=""),
              person(county="410922", living_arrangement="与家人同住", categories="", phone="")]
    people[1]["状态"] = "死亡"
    content = csv_bytes(people, CHINESE + ["状态"], ENGLISH + ["状态"])
    response = await upload(registry, city, content)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["links"]["self"] == f"/v1/imports/{body['job_id']}"
    assert response.headers["location"] == body["links"]["self"]
    job = await finished(registry, city, response)
    assert (job["status"], job["accepted"], job["rejected"], job["processed"]) == ("succeeded", 3, 0, 3)

    stored = await residents_of(settings, [p["id_number"] for p in people])
    first, second, third = (stored[p["id_number"]] for p in people)
    assert first["living_arrangement"] == "alone"
    assert first["categories"] == ["minimum_allowance", "severe_disability"]
    assert second["status"] == "deceased" and second["ability_level"] is None
    assert second["date_of_death"] is None
    assert third["county_code"] == "410922" and third["phone"] is None and third["categories"] == []

    events = await outbox_events(settings, [r["id"] for r in stored.values()])
    assert [e.type for e in events] == ["eldercare.resident.registered.v1"] * 3
    for event in events:
        data = parse_data(event)
        assert isinstance(data, ResidentRegistered) and event.subject == data.resident.resident_id
        assert event.countycode == data.resident.county_code and event.traceparent
    records = await read_topic(settings.kafka_bootstrap_servers, RESIDENTS_TOPIC, idle=3, timeout=60)
    published = {r.key.decode() for r in records}
    assert {str(r["id"]) for r in stored.values()} <= published
    assert not any(p["id_number"].encode() in r.value for r in records for p in people)


async def test_gb18030_csv_sent_as_the_body_is_read(registry, puyang, settings):
    people = [person(name="訾桂兰", village="后訾庄村"), person(name="仝建国")]
    content = csv_bytes(people, encoding="gb18030")
    job = await import_file(registry, puyang, content, filename="濮阳县.csv", raw_type="text/csv")
    assert (job["status"], job["accepted"], job["filename"]) == ("succeeded", 2, "濮阳县.csv")
    stored = await residents_of(settings, [p["id_number"] for p in people])
    assert {r["name"] for r in stored.values()} == {"訾桂兰", "仝建国"}
    assert stored[people[0]["id_number"]]["village"] == "后訾庄村"


async def test_xlsx_with_a_title_row_and_numbers_where_text_belongs(registry, city, settings):
    good, rounded = person(), person()
    while rounded["id_number"].endswith("X"):  # a number cell cannot hold a check character X
        rounded = person()
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["濮阳县老年人信息登记表"])
    sheet.append(CHINESE)
    for p, id_cell in ((good, good["id_number"]), (rounded, float(rounded["id_number"]))):
        cells = [p[f] for f in ENGLISH]
        cells[ENGLISH.index("id_number")] = id_cell
        cells[ENGLISH.index("phone")] = 13812345678.0  # a phone typed into a number cell
        cells[ENGLISH.index("ability_level")] = 2
        cells[ENGLISH.index("county_code")] = 410928
        sheet.append(cells)
    buffer = io.BytesIO()
    book.save(buffer)
    job = await import_file(registry, city, buffer.getvalue(), filename="居民.xlsx")
    assert (job["status"], job["accepted"], job["rejected"]) == ("succeeded", 1, 1)
    stored = (await residents_of(settings, [good["id_number"]]))[good["id_number"]]
    assert (stored["phone"], stored["ability_level"], stored["county_code"]) == ("13812345678", 2, "410928")
    [header, problem] = await error_report(registry, city, job)
    assert header == ["行号", "列", "值", "问题"]
    assert problem[0] == "4" and problem[1] == "身份证号" and "E+17" in problem[2]
    assert "科学计数法" in problem[3] and "scientific notation" in problem[3]


# ---------------------------------------------------------------- bad rows


async def test_bad_rows_are_reported_and_the_good_ones_imported(registry, puyang, qingfeng, settings):
    elsewhere = person(county="410922")
    created = await registry.post("/v1/residents", headers=qingfeng, json={
        **elsewhere, "categories": ["minimum_allowance"], "living_arrangement": "alone", "ability_level": 1})
    assert created.status_code == 201, created.text
    first, last = person(), person(name="李玉兰")
    bad_check = person()
    bad_check["id_number"] = bad_check["id_number"][:17] + ("0" if bad_check["id_number"][17] != "0" else "1")
    people = [
        first,                                            # row 2
        bad_check,                                        # row 3: wrong check character
        person(name=""),                                  # row 4: no name
        person(county="999999"),                          # row 5: no such county
        {**first, "name": "王秀英(重复)"},                   # row 6: same ID as row 2
        person(county="410922"),                          # row 7: another county's row
        {**elsewhere, "county_code": "410928"},           # row 8: registered by 410922
        last,                                             # row 9
    ]
    job = await import_file(registry, puyang, csv_bytes(people))
    assert (job["status"], job["processed"], job["accepted"], job["rejected"]) == ("succeeded", 8, 2, 6)
    assert set(await residents_of(settings, [first["id_number"], last["id_number"]])) == {
        first["id_number"], last["id_number"]}

    header, *rows = await error_report(registry, puyang, job)
    assert header == ["行号", "列", "值", "问题"]
    by_row = {int(r[0]): r for r in rows}
    assert sorted(by_row) == [3, 4, 5, 6, 7, 8]
    assert by_row[3][1] == "身份证号" and "校验位不对" in by_row[3][3] and "check character" in by_row[3][3]
    assert by_row[4][1:3] == ["姓名", ""] and by_row[4][3].startswith("姓名必填")
    assert by_row[5][1:3] == ["县区代码", "999999"] and "不是本市的县区代码" in by_row[5][3]
    assert by_row[6][1] == "身份证号" and "第 2 行" in by_row[6][3] and "row 2" in by_row[6][3]
    assert by_row[7][1] == "县区代码" and "410922" in by_row[7][3] and "410928" in by_row[7][3]
    assert by_row[8][1] == "身份证号" and "already registered by county 410922" in by_row[8][3]
    assert "transfer" in by_row[8][3] and "王秀英" not in by_row[8][3]
    text = "\n".join(",".join(r) for r in rows)
    for p in people:  # the report never shows a whole ID number
        assert p["id_number"] not in text
    assert by_row[3][2] == bad_check["id_number"][:6] + "********" + bad_check["id_number"][-4:-1] + "*"

    page = (await registry.get(job["links"]["errors"], params={"format": "json", "limit": 4},
                               headers=puyang)).json()
    assert [i["row"] for i in page["items"]] == [3, 4, 5, 6] and page["next_cursor"]
    rest = (await registry.get(job["links"]["errors"], params={"format": "json", "cursor": page["next_cursor"]},
                               headers=puyang)).json()
    assert [i["row"] for i in rest["items"]] == [7, 8] and rest["next_cursor"] is None
    assert set(rest["items"][0]) == {"row", "column", "value", "message"}


async def test_a_county_token_gets_other_counties_rows_rejected_not_the_file(registry, puyang, settings):
    own, foreign = person(), person(county="410923")
    job = await import_file(registry, puyang, csv_bytes([own, foreign], ENGLISH))
    assert (job["status"], job["accepted"], job["rejected"]) == ("succeeded", 1, 1)
    assert list(await residents_of(settings, [own["id_number"], foreign["id_number"]])) == [own["id_number"]]
    [_, problem] = await error_report(registry, puyang, job)
    assert problem[:3] == ["3", "county_code", "410923"] and "410928" in problem[3]


# ---------------------------------------------------------------- re-import and updates


async def test_reimporting_the_same_file_changes_nothing_and_sends_no_event(registry, city, settings):
    people = [person(), person(living_arrangement="机构", categories="失智;计生特殊家庭"), person(county="410902")]
    content = csv_bytes(people)
    first = await import_file(registry, city, content)
    assert first["accepted"] == 3
    before = await residents_of(settings, [p["id_number"] for p in people])
    events_before = await outbox_events(settings, [r["id"] for r in before.values()])

    again = await import_file(registry, city, content)
    assert (again["accepted"], again["updated"], again["unchanged"], again["rejected"]) == (0, 0, 3, 0)
    after = await residents_of(settings, [p["id_number"] for p in people])
    assert {k: (v["version"], v["updated_at"]) for k, v in after.items()} == {
        k: (v["version"], v["updated_at"]) for k, v in before.items()}
    assert len(await outbox_events(settings, [r["id"] for r in after.values()])) == len(events_before) == 3


async def test_a_changed_row_updates_its_resident_with_one_event(registry, puyang, settings):
    people = [person(), person(categories="低保;重残"), person()]
    await import_file(registry, puyang, csv_bytes(people))
    # An empty ability level keeps the one assessed.
    people[0] = {**people[0], "phone": "13700001111", "ability_level": ""}
    people[1] = {**people[1], "categories": "重残;低保"}  # the same categories in another order
    job = await import_file(registry, puyang, csv_bytes(people))
    assert (job["accepted"], job["updated"], job["unchanged"]) == (0, 1, 2)

    stored = await residents_of(settings, [p["id_number"] for p in people])
    changed = stored[people[0]["id_number"]]
    assert (changed["phone"], changed["ability_level"], changed["version"]) == ("13700001111", 1, 2)
    assert stored[people[1]["id_number"]]["version"] == 1
    events = await outbox_events(settings, [changed["id"]])
    assert [e.type for e in events] == ["eldercare.resident.registered.v1", "eldercare.resident.updated.v1"]
    update = parse_data(events[1])
    assert isinstance(update, ResidentUpdated)
    assert update.changed == ["phone"] and update.resident.version == 2


async def test_an_empty_status_keeps_the_residents_status(registry, city, settings):
    people = [person(), person()]
    people[0]["状态"] = "死亡"
    people[1]["状态"] = "迁出"
    await import_file(registry, city, csv_bytes(people, CHINESE + ["状态"], ENGLISH + ["状态"]))
    without_column = await import_file(registry, city, csv_bytes(people))
    people[0]["状态"] = ""
    people[1]["状态"] = "正常"
    with_one_empty = await import_file(registry, city, csv_bytes(people, CHINESE + ["状态"], ENGLISH + ["状态"]))
    assert (without_column["unchanged"], without_column["updated"]) == (2, 0)
    assert (with_one_empty["unchanged"], with_one_empty["updated"]) == (1, 1)
    stored = await residents_of(settings, [p["id_number"] for p in people])
    assert [stored[p["id_number"]]["status"] for p in people] == ["deceased", "active"]


# ---------------------------------------------------------------- jobs


async def test_progress_shows_counts_percent_rate_warnings_and_links(registry, puyang, settings):
    content = csv_bytes([person(), person()], extra={"备注": "独居老人"})
    job = await import_file(registry, puyang, content, filename="进度.csv")
    assert set(job) >= {"job_id", "status", "total_rows", "processed", "accepted", "updated", "unchanged",
                        "rejected", "percent", "created_at", "started_at", "finished_at", "rows_per_second",
                        "warnings", "error", "links"}
    assert (job["total_rows"], job["processed"], job["percent"]) == (2, 2, 100.0)
    assert job["county_code"] == "410928"
    assert job["rows_per_second"] > 0 and job["finished_at"] and job["error"] is None
    assert job["warnings"] == ["未识别的列“备注”已忽略 / unknown column '备注' ignored"]
    assert job["links"] == {"self": f"/v1/imports/{job['job_id']}",
                            "errors": f"/v1/imports/{job['job_id']}/errors"}

    listed = (await registry.get("/v1/imports", headers=puyang)).json()
    assert listed["items"][0]["job_id"] == job["job_id"]
    assert all(item["county_code"] == "410928" for item in listed["items"])
    page = (await registry.get("/v1/imports", params={"limit": 1}, headers=puyang)).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    following = (await registry.get("/v1/imports", params={"limit": 1, "cursor": page["next_cursor"]},
                                    headers=puyang)).json()
    assert following["items"][0]["job_id"] != page["items"][0]["job_id"]


async def test_a_county_reads_only_its_own_imports(registry, settings, puyang, qingfeng, city):
    job = await import_file(registry, puyang, csv_bytes([person()]))
    location = job["links"]["self"]
    assert (await registry.get(location, headers=qingfeng)).status_code == 403
    assert (await registry.get(job["links"]["errors"], headers=qingfeng)).status_code == 403
    assert (await registry.get(location, headers=city)).status_code == 200
    assert (await registry.get(f"/v1/imports/{uuid.uuid4()}", headers=puyang)).status_code == 404
    viewer = token_for(settings, "viewer")
    assert (await upload(registry, viewer, csv_bytes([person()]))).status_code == 403
    assert (await registry.get(location, headers=viewer)).status_code == 403


async def test_a_file_without_a_required_column_fails_saying_which(registry, puyang):
    fields = [f for f in ENGLISH if f not in ("village", "living_arrangement")]
    content = csv_bytes([person()], [FIELD_LABELS_ZH[f] for f in fields], fields)
    job = await import_file(registry, puyang, content)
    assert job["status"] == "failed" and job["processed"] == 0
    assert "村社区" in job["error"] and "居住状况" in job["error"] and "village" in job["error"]


async def test_more_than_a_million_rows_is_refused_at_once(registry, city):
    content = b"name,id_number\n" + b"x,1\n" * 1_000_001
    response = await upload(registry, city, content, raw_type="text/csv")
    assert response.status_code == 413
    assert "1,000,000" in response.json()["detail"]


async def test_only_spreadsheets_are_accepted(registry, city):
    response = await registry.post("/v1/imports", json={"name": "x"}, headers=city)
    assert response.status_code == 415
    response = await registry.post("/v1/imports", files={"other": ("x.csv", b"name\n")}, headers=city)
    assert response.status_code == 400 and response.json()["field"] == "file"
    response = await upload(registry, city, b"", raw_type="text/csv")
    assert response.status_code == 400


async def test_jobs_left_running_by_a_dead_process_are_marked_failed(registry, settings):
    conn = await db(settings)
    holder = await db(settings)
    dead, alive = uuid.uuid4(), uuid.uuid4()
    try:
        for job_id in (dead, alive):
            await conn.execute("INSERT INTO import_jobs (id, actor, file_sha256, status, processed) "
                               "VALUES ($1, 'test', 'x', 'running', 25000)", job_id)
        # A live importer (another replica, `eldercare seed`) holds its job's advisory lock.
        await holder.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", f"registry-import:{alive}")
        assert await recover_interrupted_imports(registry.app.state.runtime) >= 1
        found = await conn.fetch("SELECT id, status, error FROM import_jobs WHERE id = ANY($1)",
                                 [dead, alive])
        rows = {r["id"]: r for r in found}
        assert rows[dead]["status"] == "failed" and "25,000" in rows[dead]["error"]
        assert "import the same file again" in rows[dead]["error"]
        assert rows[alive]["status"] == "running"
    finally:
        await conn.execute("UPDATE import_jobs SET status = 'failed' WHERE id = $1", alive)
        await holder.close()
        await conn.close()


async def test_events_of_imported_residents_are_the_registry_contract(registry, city, settings):
    people = [person(categories="特困集中供养", living_arrangement="机构")]
    await import_file(registry, city, csv_bytes(people))
    stored = await residents_of(settings, [people[0]["id_number"]])
    [event] = await outbox_events(settings, [r["id"] for r in stored.values()])
    data = parse_data(event)
    assert data.resident.categories == ["extreme_poverty_centralised"]
    assert data.resident.living_arrangement == "institution" and data.resident.gender in ("male", "female")
    assert "id_number" not in orjson.dumps(event.data).decode() and "phone" not in event.data["resident"]
