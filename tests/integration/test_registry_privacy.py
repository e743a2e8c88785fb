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
