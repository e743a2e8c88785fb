"""Spreadsheet import rules without a server: file sniffing, headers, cells, row checks and their
messages, the fast path's agreement with validate_resident, and the events the importer builds."""

from __future__ import annotations

import codecs
import random
import uuid
from datetime import date

import pytest

from eldercare.synthetic import CSV_HEADERS, generate_residents
from services.registry.domain.imports import (
    CONTRACT, FIELD_LABELS_ZH, ID, ID_NUMBER, SIGNED_ON, STAGED_COLUMNS, STATUS, RowChecker, cell_text, csv_delimiter, detect_kind,
    field_of_header, id_cell_text, is_blank, looks_like_header, map_headers, missing_columns_message,
    shown_value, sniff_encoding,
)
from services.registry.domain.residents import validate_resident
from services.registry.importer import (
    REGISTERED, UPDATED, changed_fields, copy_text, event_payload, random_uuids, registered_rows, upsert_sql,
)
from shared.events import CloudEvent, make_event, parse_data
from shared.events.residents import ResidentRegistered, ResidentSnapshot, ResidentUpdated
from shared.idcard import make_id_number
from shared.regions import load_counties

TODAY = date(2026, 11, 25)
KNOWN = frozenset(load_counties())
ENGLISH = list(CSV_HEADERS)
GOOD_ID = make_id_number("410928", date(1945, 3, 15), 123)


def checker(headers=ENGLISH, scope: str | None = None) -> RowChecker:
    return RowChecker(map_headers(headers), KNOWN, scope, TODAY)


def row(**over) -> list[str]:
    values = {"name": "王秀英", "id_number": GOOD_ID, "phone": "13812345678", "county_code": "410928",
              "township": "城关镇", "village": "东街社区", "address": "", "living_arrangement": "独居",
              "categories": "低保;重残", "ability_level": "1", "emergency_contact": "李建国",
              "emergency_phone": "13987654321", "home_lat": "", "home_lon": "", "status": "",
              "family_doctor_contract": "", "family_doctor_signed_on": ""}
    values.update(over)
    return [values[h] for h in ENGLISH]


# ---------------------------------------------------------------- the file


def test_file_kind_is_told_by_its_first_bytes():
    assert detect_kind(b"PK\x03\x04\x14\x00") == "xlsx"
    assert detect_kind(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") == "xls"
    assert detect_kind("姓名,身份证号".encode()) == "csv"


@pytest.mark.parametrize("data,encoding", [
    ("姓名,身份证号\n王秀英,1\n".encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF8 + "姓名\n".encode("utf-8"), "utf-8-sig"),
    ("姓名,身份证号\n王秀英,1\n".encode("gb18030"), "gb18030"),
    ("name\tid_number\n".encode("utf-16"), "utf-16"),
    (b"name,id_number\n", "utf-8"),
])
def test_csv_encoding_is_utf8_with_or_without_bom_else_gb18030(data, encoding):
    assert sniff_encoding(data) == encoding


def test_a_gb18030_byte_late_in_the_file_still_makes_it_gb18030():
    data = b"name,id_number\n" * 10_000 + "王秀英".encode("gb18030")
    assert sniff_encoding(data) == "gb18030"


def test_tab_separated_text_is_recognised_by_its_header():
    assert csv_delimiter("姓名\t身份证号\n") == "\t"
    assert csv_delimiter("姓名,身份证号\n") == ","


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize("header,field", [
    ("name", "name"), ("ID_Number", "id_number"), ("id number", "id_number"), ("身份证号", "id_number"),
    ("*身份证号", "id_number"), ("身份证号码", "id_number"), ("身份证号(必填)", "id_number"),
    ("身份证号（必填）", "id_number"), ("\ufeff姓名", "name"), ("状态", "status"), ("县区代码", "county_code"),
    ("备注", None), ("", None),
])
def test_headers_are_english_field_names_or_the_template_chinese(header, field):
    assert field_of_header(header) == field


def test_every_template_header_maps_to_its_field():
    for name, zh in FIELD_LABELS_ZH.items():
        assert field_of_header(zh) == name
        assert field_of_header(name) == name


def test_header_map_reports_unknown_repeated_and_missing_columns():
    headers = map_headers(["姓名", "身份证号", "备注", "姓名", "县区代码", "", "乡镇街道"])
    assert headers.index == {"name": 0, "id_number": 1, "county_code": 4, "township": 6}
    assert headers.unknown == ("备注",) and headers.repeated == ("姓名",)
    assert headers.missing == ("village", "living_arrangement")
    assert headers.column("name") == "姓名" and headers.column("village") == "村社区"
    message = missing_columns_message(headers.missing)
    assert "村社区" in message and "居住状况" in message and "village" in message


def test_a_title_row_is_not_a_header():
    assert not looks_like_header(["濮阳市老年人信息导入模板", "", ""])
    assert looks_like_header(["姓名", "身份证号", "备注"])


# ---------------------------------------------------------------- cells


def test_spreadsheet_numbers_become_the_text_a_clerk_typed():
    assert cell_text(13812345678.0) == "13812345678"
    assert cell_text(2.0) == "2"
    assert cell_text(None) == ""
    assert cell_text(date(2026, 1, 2)) == "2026-01-02"
    assert id_cell_text(410928194503151234.0) == "4.10928194503151E+17"
    assert id_cell_text("410928194503151234") == "410928194503151234"


def test_blank_rows_are_recognised():
    assert is_blank(["", None, "  "]) and not is_blank(["", "x"])


def test_shown_values_mask_id_and_phone_numbers_and_cut_long_text():
    assert shown_value("id_number", "410928194503151234") == "410928********123*"
    assert shown_value("phone", "13812345678") == "138****5678"
    assert shown_value("emergency_phone", "13987654321") == "139****4321"
    assert shown_value("address", "长" * 80).endswith("…") and len(shown_value("address", "长" * 80)) == 50
    assert shown_value("name", "  王秀英 ") == "王秀英"


# ---------------------------------------------------------------- rows


def test_a_good_row_is_staged_with_codes_and_facts_from_the_id_number():
    check = checker()
    staged = check.check(2, row())
    assert staged is not None and not check.errors
    record = dict(zip(STAGED_COLUMNS, staged))
    assert record["row_no"] == 2 and uuid.UUID(record["id"]).version == 4
    assert record["id_number"] == GOOD_ID and record["birth_date"] == date(1945, 3, 15)
    assert record["gender"] == "male"  # sequence 123 is odd
    assert record["living_arrangement"] == "alone"
    assert record["categories"] == ["minimum_allowance", "severe_disability"]
    assert record["ability_level"] == 1 and record["status"] is None and record["address"] is None


def _errors(cells, scope=None, headers=ENGLISH):
    check = checker(headers, scope)
    assert check.check(7, cells) is None
    assert check.rejected == 1
    return check.errors


def test_wrong_check_character_is_explained_chinese_first_with_the_number_masked():
    bad = GOOD_ID[:17] + ("0" if GOOD_ID[17] != "0" else "1")
    [(row_no, column, value, message)] = _errors(row(id_number=bad))
    assert (row_no, column, value) == (7, "id_number", "410928********" + bad[-4:-1] + "*")
    assert message.startswith("身份证号 410928********") and "校验位不对" in message
    assert "check character" in message and bad not in message


def test_missing_required_fields_are_named_by_the_header_as_written():
    headers = [FIELD_LABELS_ZH.get(h, h) for h in ENGLISH]
    errors = _errors(row(name="", village=" "), headers=headers)
    assert [(e[1], e[3].split(" / ")[0]) for e in errors] == [("姓名", "姓名必填"), ("村社区", "村社区必填")]


@pytest.mark.parametrize("over,column,fragment", [
    ({"county_code": "999999"}, "county_code", "不是本市的县区代码"),
    ({"living_arrangement": "有时独居"}, "living_arrangement", "居住状况“有时独居”无法识别"),
    ({"categories": "低保;富裕"}, "categories", "特殊困难类别“富裕”无法识别"),
    ({"categories": "特困"}, "categories", "特困集中供养 还是 特困分散供养"),
    ({"ability_level": "5"}, "ability_level", "能力等级应为 0"),
    ({"phone": "12"}, "phone", "联系电话不是有效的电话号码"),
    ({"status": "失联"}, "status", "状态“失联”无法识别"),
    ({"id_number": "4.10928E+17"}, "id_number", "科学计数法"),
    ({"id_number": "41092819450315"}, "id_number", "应为 18 位,这个是 14 位"),
])
def test_each_bad_value_gets_a_message_a_clerk_understands(over, column, fragment):
    [error] = _errors(row(**over))
    assert error[1] == column and fragment in error[3] and " / " in error[3]


def test_a_county_may_import_only_its_own_rows():
    [error] = _errors(row(county_code="410922"), scope="410928")
    assert error[1] == "county_code" and "410922" in error[3] and "410928" in error[3]


def test_a_repeated_id_number_keeps_the_first_row():
    check = checker()
    assert check.check(2, row()) is not None
    assert check.check(5, row(name="张三")) is None
    [(row_no, column, value, message)] = check.errors
    assert row_no == 5 and value == "410928********" + GOOD_ID[-4:-1] + "*"
    assert "第 2 行" in message and "row 2" in message


def test_status_words_map_to_codes():
    for word, code in (("正常", "active"), ("死亡", "deceased"), ("迁出", "transferred"), ("Deceased", "deceased"),
                       ("", None)):
        staged = checker().check(2, row(status=word))
        assert staged[STATUS] == code


def test_columns_in_any_order_and_missing_optional_ones_are_fine():
    headers = ["身份证号", "居住状况", "姓名", "县区代码", "乡镇街道", "村社区"]
    staged = checker(headers).check(2, [GOOD_ID, "空巢", "王秀英", "410928", "城关镇", "东街社区"])
    assert staged is not None
    record = dict(zip(STAGED_COLUMNS, staged))
    assert record["living_arrangement"] == "empty_nest"
    assert record["phone"] is None and record["categories"] == []


def _normalised(fields) -> tuple:
    return (fields.id_number, fields.name, fields.phone, fields.county_code, fields.township, fields.village,
            fields.address, fields.living_arrangement, fields.categories, fields.ability_level,
            fields.emergency_contact, fields.emergency_phone, fields.home_lat, fields.home_lon, fields.birth_date,
            fields.gender)


def _mutations(rng: random.Random, cells: list[str]) -> list[str]:
    cells = list(cells)
    i = rng.randrange(14)  # the record's columns, the home location included
    choice = rng.random()
    if choice < 0.1:
        # Typed with a Chinese input method: full-width digits, a lower-case x (valid, slow path).
        cells[1] = cells[1].translate(str.maketrans("0123456789X", "０１２３４５６７８９x"))
    elif choice < 0.25:
        cells[i] = ""
    elif choice < 0.45:
        cells[i] = f"  {cells[i]} "
    elif choice < 0.6 and cells[i]:
        cells[i] = cells[i][:-1] + rng.choice("0123456789Xx１")
    elif choice < 0.7:
        cells[i] = cells[i] + ".0"
    elif choice < 0.8:
        cells[i] = rng.choice(["独居", "与家人", "低保、失智", "特困", "4.0", "+86 138 1234 5678", "0393-1234567"])
    else:
        cells[i] = "长" * rng.choice([49, 50, 51, 201])
    return cells


def test_the_fast_path_agrees_with_validate_resident_on_good_and_mangled_rows():
    rng = random.Random(7)
    check = checker()
    for n, resident in enumerate(generate_residents(3000, seed=11)):
        cells = [";".join(v) if isinstance(v, list) else ("" if v is None else str(v))
                 for v in (resident[h] for h in ENGLISH)]
        if n % 2:
            cells = _mutations(rng, cells)
        expected, problems = validate_resident(dict(zip(ENGLISH, cells)), KNOWN, TODAY)
        before = len(check.errors)
        staged = check.check(n + 2, cells)
        if expected is None:
            assert staged is None, cells
            assert {e[1] for e in check.errors[before:]} == {p.field for p in problems} or "4.1" in cells[1]
        elif staged is not None:  # may still be rejected by a file rule (a repeated ID number)
            assert staged[ID_NUMBER:ID_NUMBER + 16] == _normalised(expected), cells


# ---------------------------------------------------------------- writing


def test_built_events_parse_with_the_resident_models_and_match_make_event():
    staged = checker().check(2, row())
    traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    [outbox_row] = registered_rows([staged], "2026-11-25T08:00:00.123456Z", traceparent)
    event_id, topic, key, payload, headers = outbox_row
    assert topic == "eldercare.registry.residents.v1" and key == staged[ID] and headers is None
    event = CloudEvent.from_json(payload)
    data = parse_data(event)
    assert isinstance(data, ResidentRegistered) and event.id == event_id and event.subject == staged[ID]
    assert data.resident.categories == ["minimum_allowance", "severe_disability"]
    assert data.resident.version == 1 and event.traceparent == traceparent
    reference = make_event(REGISTERED, "registry", ResidentRegistered(resident=data.resident),
                           subject=staged[ID], countycode="410928", event_id=event_id, time=event.time,
                           traceparent=event.traceparent)
    assert reference.to_json() == payload


def test_updated_events_carry_the_changed_fields():
    staged = checker().check(2, row(phone="13900000000", status="死亡"))
    old = {"name": "王秀英", "phone": "13812345678", "township": "城关镇", "village": "东街社区",
           "address": None, "living_arrangement": "alone",
           "categories": ["severe_disability", "minimum_allowance"], "ability_level": 1,
           "emergency_contact": "李建国", "emergency_phone": "13987654321", "status": "active"}
    assert changed_fields(old, staged) == ["phone", "status"]
    assert changed_fields(old, checker().check(2, row(phone="13900000000"))) == ["phone"]
    payload = event_payload(UPDATED, str(uuid.uuid4()), staged[ID], staged, ability_level=1,
                            status="deceased", family_bed=True, version=3, time="2026-11-25T08:00:00Z",
                            traceparent=None, changed=["phone", "status"])
    data = parse_data(CloudEvent.from_json(payload))
    assert isinstance(data, ResidentUpdated) and data.changed == ["phone", "status"]
    assert data.resident == ResidentSnapshot.model_validate({**data.resident.model_dump(), "version": 3})


def test_copy_text_escapes_what_copy_would_misread():
    staged = checker().check(2, row(name="王\\秀英", address="东街\t3号"))
    line = copy_text([staged]).decode().rstrip("\n").split("\t")
    assert len(line) == 20 and line[-2:] == ["f", "\\N"]
    assert line[2] == "王\\\\秀英" and line[7] == "东街\\t3号"
    assert line[9] == "{minimum_allowance,severe_disability}" and line[13:16] == ["\\N", "\\N", "1945-03-15"]
    located = copy_text([checker().check(2, row(home_lat="35.7621", home_lon="115.03"))]).decode().split("\t")
    assert located[13:15] == ["35.7621", "115.03"]


def test_the_upsert_never_crosses_counties():
    assert "WHERE r.county_code = EXCLUDED.county_code AND" in upsert_sql()


def test_random_uuids_are_version_4():
    ids = random_uuids(1000)
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def test_resident_ids_are_version_7_and_sorted_in_the_order_drawn():
    from services.registry.ids import new_resident_id, time_ordered_uuids
    from services.registry.importer import uuid_stream

    ids = time_ordered_uuids(10_000) + time_ordered_uuids(3)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in ids)
    stream = uuid_stream(batch=100)
    drawn = [stream() for _ in range(250)]
    assert drawn == sorted(drawn) and drawn[0] > ids[-1]
    assert new_resident_id().version == 7


def test_the_csv_line_bound_finds_any_line_beyond_the_limit_across_blocks():
    from services.registry.importer import _line_run

    limit = 1000
    assert _line_run(b"a" * limit, 0, limit) == limit and _line_run(b"a" * (limit + 1), 0, limit) is None
    assert _line_run(b"a\n" + b"b" * limit + b"\nc", 0, limit) == 1
    assert _line_run(b"a\n" + b"b" * (limit + 1) + b"\nc", 0, limit) is None
    assert _line_run(b"x" * 10 + b"\n", limit - 10, limit) == 0 and _line_run(b"x" * 11 + b"\n", limit - 10, limit) is None
    assert _line_run((b"y" * 99 + b"\n") * 1000, 0, limit) == 0


# ---------------------------------------------------------------- home location


def test_a_home_location_is_staged_as_decimal_degrees_rounded_to_six_places():
    staged = checker().check(2, row(home_lat=" 35.76213579 ", home_lon="115.0300"))
    record = dict(zip(STAGED_COLUMNS, staged))
    assert (record["home_lat"], record["home_lon"]) == (35.762136, 115.03)
    assert dict(zip(STAGED_COLUMNS, checker().check(3, row())))["home_lat"] is None


@pytest.mark.parametrize("lat,lon,field", [
    ("35.76", "", "home_lon"), ("", "115.03", "home_lat"), ("95", "115.03", "home_lat"),
    ("35.76", "东经115度", "home_lon"), ("nan", "115.03", "home_lat"), ("35.76", "-181", "home_lon"),
])
def test_a_half_or_impossible_home_location_is_refused_naming_the_column_chinese_first(lat, lon, field):
    [(row_no, column, value, message)] = _errors(row(home_lat=lat, home_lon=lon))
    assert row_no == 7 and column == field
    assert message.startswith(FIELD_LABELS_ZH[field]) and "WGS-84" in message and " / " in message


def test_the_template_names_the_location_columns_in_both_languages():
    assert FIELD_LABELS_ZH["home_lat"] == "住址纬度" and FIELD_LABELS_ZH["home_lon"] == "住址经度"
    for header, field in (("住址纬度", "home_lat"), ("住址经度(WGS-84)", "home_lon"), ("home_lat", "home_lat"),
                          ("Home Lon", "home_lon"), ("纬度", "home_lat"), ("longitude", "home_lon")):
        assert field_of_header(header) == field
    zh = [FIELD_LABELS_ZH[h] for h in ENGLISH]
    staged = checker(zh).check(2, row(home_lat="35.7621", home_lon="115.03"))
    assert staged is not None and staged[STAGED_COLUMNS.index("home_lon")] == 115.03


def test_an_import_without_a_location_changes_none_and_one_with_a_new_location_changes_both():
    old = {"name": "王秀英", "phone": "13812345678", "township": "城关镇", "village": "东街社区",
           "address": None, "living_arrangement": "alone",
           "categories": ["severe_disability", "minimum_allowance"], "ability_level": 1,
           "emergency_contact": "李建国", "emergency_phone": "13987654321", "status": "active",
           "home_lat": 35.7621, "home_lon": 115.03}
    assert changed_fields(old, checker().check(2, row())) == []
    assert changed_fields(old, checker().check(2, row(home_lat="35.7621", home_lon="115.03"))) == []
    assert changed_fields(old, checker().check(2, row(home_lat="35.7625", home_lon="115.0301"))) == [
        "home_lat", "home_lon"]


def test_events_carry_the_home_location_and_leave_it_out_when_unknown():
    staged = checker().check(2, row(home_lat="35.7621", home_lon="115.03"))
    payload = event_payload(REGISTERED, str(uuid.uuid4()), staged[ID], staged, ability_level=1, status="active",
                            family_bed=False, version=1, time="2026-11-25T08:00:00Z", traceparent=None)
    data = parse_data(CloudEvent.from_json(payload))
    assert (data.resident.home_lat, data.resident.home_lon) == (35.7621, 115.03)
    unknown = checker().check(3, row())
    payload = event_payload(REGISTERED, str(uuid.uuid4()), unknown[ID], unknown, ability_level=1, status="active",
                            family_bed=False, version=1, time="2026-11-25T08:00:00Z", traceparent=None)
    assert b"home_lat" not in payload
    # After an update the stored location is the one the event carries.
    kept = event_payload(UPDATED, str(uuid.uuid4()), unknown[ID], unknown, ability_level=1, status="active",
                         family_bed=False, version=2, time="2026-11-25T08:00:00Z", traceparent=None, changed=[],
                         home=(35.5, 115.1))
    assert parse_data(CloudEvent.from_json(kept)).resident.home_lat == 35.5
