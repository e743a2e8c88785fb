"""What a county clerk, a curious clerk and an outsider can learn from the registry: error reports,
masked views, ID-number lookups and the audit log, against the real services."""

from __future__ import annotations

import io

import openpyxl

from tests.conftest import fresh_id_number
from tests.integration.test_registry_import import CHINESE, ENGLISH, csv_bytes, error_report, import_file, person


# ---------------------------------------------------------------- error reports (finding 5)


async def test_an_id_or_phone_number_typed_in_any_column_is_masked_in_the_report_value_and_message(registry, city):
    stray_id, stray_phone = fresh_id_number(), "13912345678"
    people = [
        person(name="", address=f"东街3号 电话{stray_phone}"),        # rejected for the name; phone in the address
        person(living_arrangement=f"独居{stray_id}"),                  # the message quotes the cell
        person(categories=f"低保;{stray_phone}"),
        person(county_code=stray_id),
    ]
    job = await import_file(registry, city, csv_bytes(people))
    assert job["status"] == "succeeded" and job["rejected"] == 4, job
    _, *rows = await error_report(registry, city, job)
    text = "\n".join("|".join(r) for r in rows)
    assert len(rows) >= 4
    for secret in (stray_id, stray_phone, stray_id[6:14]):
        assert secret not in text, text
    assert stray_id[:6] + "********" in text and "139****5678" in text
    page = (await registry.get(job["links"]["errors"], params={"format": "json"}, headers=city)).json()
    assert stray_id not in str(page) and stray_phone not in str(page)


async def test_an_id_number_stored_as_a_number_shows_neither_region_nor_birth_date(registry, city):
    rounded = person()
    while rounded["id_number"].endswith("X"):
        rounded = person()
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(CHINESE)
    cells = [rounded[f] for f in ENGLISH]
    cells[ENGLISH.index("id_number")] = float(rounded["id_number"])
    sheet.append(cells)
    buffer = io.BytesIO()
    book.save(buffer)
    job = await import_file(registry, city, buffer.getvalue(), filename="居民.xlsx")
    [_, problem] = await error_report(registry, city, job)
    assert "E+17" in problem[2] and "科学计数法" in problem[3]
    region, birth = rounded["id_number"][:6], rounded["id_number"][6:14]
    for shown in (problem[2], problem[3]):
        assert region[1:] not in shown.replace(".", "") and birth not in shown.replace(".", "")


async def test_cells_that_would_run_as_formulas_are_neutralised_in_the_error_report(registry, city):
    people = [person(living_arrangement='=HYPERLINK("http://evil.example","点我")'),
              person(name="", village="@SUM(1+1)*cmd|' /C calc'!A0"),
              person(categories="+1+1"), person(county_code="-2+3")]
    job = await import_file(registry, city, csv_bytes(people))
    _, *rows = await error_report(registry, city, job)
    assert rows
    for row in rows:
        for cell in row[1:]:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert any(r[2].startswith("'=HYPERLINK") for r in rows)


# ---------------------------------------------------------------- masked views and lookups (finding 4)


def candidate_birth_dates(masked: dict, today) -> int:
    """How many birth dates agree with everything a masked view shows (the ID number's visible
    characters, its check character if shown, the birth year and the age)."""
    from datetime import timedelta

    from services.registry.domain.residents import age_on
    from shared.idcard import check_character

    shown = masked["id_number"]
    region, sequence, check = shown[:6], shown[14:17], shown[17]
    count = 0
    day = today.replace(year=today.year - masked["age"] - 1)
    while day <= today:
        agrees = age_on(day, today) == masked["age"]
        if masked["birth_year"] is not None:
            agrees = agrees and day.year == masked["birth_year"]
        if check != "*":
            agrees = agrees and check_character(f"{region}{day:%Y%m%d}{sequence}") == check
        count += agrees
        day += timedelta(days=1)
    return count


async def test_a_masked_view_narrows_the_birth_date_no_further_than_the_age(registry, puyang):
    from services.registry.handlers import today_local
    from tests.integration.test_registry_residents import register

    _, created = await register(registry, puyang)
    masked = (await registry.get(f"/v1/residents/{created.json()['id']}", headers=puyang)).json()
    assert masked["masked"] is True and masked["id_number"].endswith("*") and masked["birth_date"] is None
    assert candidate_birth_dates(masked, today_local()) >= 365
    found = (await registry.post("/v1/residents/search", headers=puyang,
                                 json={"village": masked["village"], "limit": 500})).json()
    for item in found["items"]:
        assert item["birth_year"] is None and item["id_number"].endswith("*")


async def test_an_id_number_lookup_is_audited_like_a_reveal_with_the_number_only_hashed(registry, settings, city):
    from tests.conftest import token_for
    from tests.integration.test_registry_residents import register

    clerk = token_for(settings, "county", "410928", subject="clerk:zhang.san")
    body, created = await register(registry, clerk)
    rid = created.json()["id"]
    no_reason = await registry.post("/v1/residents/search", headers=clerk, json={"id_number": body["id_number"]})
    assert no_reason.status_code == 400 and no_reason.json()["field"] == "reason"
    placeholder = await registry.post("/v1/residents/search", headers=clerk,
                                      json={"id_number": body["id_number"], "reason": "test"})
    assert placeholder.status_code == 422 and placeholder.json()["field"] == "reason"
    found = await registry.post("/v1/residents/search", headers=clerk,
                                json={"id_number": body["id_number"], "reason": "窗口办理 核实身份"})
    assert found.status_code == 200 and found.json()["total"] == 1
    nobody = fresh_id_number()
    assert (await registry.post("/v1/residents/search", headers=clerk,
                                json={"id_number": nobody, "reason": "窗口办理 核实身份"})).json()["total"] == 0
    audit = await registry.get("/v1/audit", params={"actor": "clerk:zhang.san"}, headers=city)
    lookups = [e for e in audit.json()["items"] if e["action"] == "lookup_id_number"]
    assert len(lookups) == 2, audit.json()
    hit, miss = sorted(lookups, key=lambda e: e["resident_id"] is None)
    assert hit["resident_id"] == rid and miss["resident_id"] is None
    for entry in lookups:
        assert entry["actor"] == "clerk:zhang.san" and entry["role"] == "county" and entry["county_code"] == "410928"
        assert entry["reason"] == "窗口办理 核实身份" and entry["at"] and len(entry["id_number_hash"]) == 64
    assert hit["id_number_hash"] != miss["id_number_hash"]
    assert body["id_number"] not in audit.text and nobody not in audit.text


async def test_id_number_lookups_are_rate_limited_per_caller_with_retry_after(registry, settings):
    from services.registry.domain.access import LOOKUPS_PER_WINDOW
    from tests.conftest import token_for

    curious = token_for(settings, "county", "410928", subject=f"clerk:curious.{fresh_id_number()[-6:]}")
    other = token_for(settings, "county", "410928", subject=f"clerk:other.{fresh_id_number()[-6:]}")
    for _ in range(LOOKUPS_PER_WINDOW):
        response = await registry.post("/v1/residents/search", headers=curious,
                                       json={"id_number": fresh_id_number(), "reason": "核对补贴发放名单"})
        assert response.status_code == 200
    refused = await registry.post("/v1/residents/search", headers=curious,
                                  json={"id_number": fresh_id_number(), "reason": "核对补贴发放名单"})
    assert refused.status_code == 429 and refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60 and refused.json()["status"] == 429
    allowed = await registry.post("/v1/residents/search", headers=other,
                                  json={"id_number": fresh_id_number(), "reason": "核对补贴发放名单"})
    assert allowed.status_code == 200


# ---------------------------------------------------------------- reasons and the audit log (finding 8)


async def test_reasons_are_capped_either_way_they_are_sent_and_must_be_real(registry, puyang):
    from urllib.parse import quote

    from tests.integration.test_registry_residents import register

    _, created = await register(registry, puyang)
    url = f"/v1/residents/{created.json()['id']}?reveal=true"
    long_header = await registry.get(url, headers={**puyang, "X-Access-Reason": quote("核" * 501)})
    assert long_header.status_code == 422 and long_header.json()["field"] == "X-Access-Reason"
    huge_header = await registry.get(url, headers={**puyang, "X-Access-Reason": "a" * 20_000})
    assert huge_header.status_code == 422 and huge_header.json()["field"] == "X-Access-Reason"
    for weak in ("x", "  .  ", "aaaa", "1111", "test", "测试"):
        for how in ({"params": {"reveal": "true", "reason": weak}},
                    {"params": {"reveal": "true"}, "headers": {**puyang, "X-Access-Reason": quote(weak)}}):
            response = await registry.get(url.partition("?")[0], **({"headers": puyang} | how))
            assert response.status_code in (400, 422) and response.json()["field"] == "reason", (weak, response.text)
    nul = await registry.get(url, headers={**puyang, "X-Access-Reason": quote("核对\x00补贴")})
    assert nul.status_code == 422 and nul.json()["field"] == "reason"
    good = await registry.get(url, headers={**puyang, "X-Access-Reason": quote("核对补贴发放名单")})
    assert good.status_code == 200 and good.json()["masked"] is False


async def test_the_audit_log_is_append_only_for_the_services_own_database_role(registry, settings, puyang):
    import asyncpg
    import pytest

    from shared.db import connect
    from tests.integration.test_registry_residents import register

    _, created = await register(registry, puyang)
    rid = created.json()["id"]
    assert (await registry.get(f"/v1/residents/{rid}", params={"reveal": "true", "reason": "联系家属确认走访"},
                               headers=puyang)).status_code == 200
    conn = await connect(settings.database_url, "registry")  # as the services connect
    try:
        for statement in ("UPDATE audit_log SET reason = 'nothing happened' WHERE resident_id = $1",
                          "DELETE FROM audit_log WHERE resident_id = $1"):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute(statement, uuid_of(rid))
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("TRUNCATE audit_log")
        assert await conn.fetchval("SELECT reason FROM audit_log WHERE resident_id = $1", uuid_of(rid)) == "联系家属确认走访"
    finally:
        await conn.close()


def uuid_of(text: str):
    import uuid

    return uuid.UUID(text)
