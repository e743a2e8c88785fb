"""Imports bound memory and time before a reader loads the file: a tiny crafted XLSX (cells at A1 and
XFD1048576, a zip bomb, a part lying about its size) or a CSV with an endless line fails its job with a
reason a clerk can read, and the registry keeps serving."""

from __future__ import annotations

import io
import struct
import zipfile

from tests.integration.test_registry_import import csv_bytes, import_file, person

_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
        '"/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.'
        'main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
        'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
    "xl/workbook.xml": (
        f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{_NS}" xmlns:r="http://schemas.'
        'openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="居民" sheetId="1" '
        'r:id="rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'),
}
HEADER = ["姓名", "身份证号", "联系电话", "县区代码", "乡镇街道", "村社区", "详细地址", "居住状况"]


def sheet_xml(cells: dict[str, str], dimension: str | None = None) -> str:
    """A worksheet with inline-string cells at the given references (row order kept)."""
    rows: dict[int, list[str]] = {}
    for ref, value in cells.items():
        row = int("".join(ch for ch in ref if ch.isdigit()))
        rows.setdefault(row, []).append(f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>')
    body = "".join(f'<row r="{r}">{"".join(c)}</row>' for r, c in sorted(rows.items()))
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{_NS}">{dim}<sheetData>{body}</sheetData></worksheet>'


def xlsx(sheet: str, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as book:
        for name, text in _PARTS.items():
            book.writestr(name, text)
        book.writestr("xl/worksheets/sheet1.xml", sheet)
        for name, data in (extra or {}).items():
            book.writestr(name, data)
    return buffer.getvalue()


def header_cells() -> dict[str, str]:
    return {f"{chr(65 + i)}1": text for i, text in enumerate(HEADER)}


async def still_serving(registry, auth) -> None:
    job = await import_file(registry, auth, csv_bytes([person()]))
    assert job["status"] == "succeeded" and job["accepted"] == 1


async def test_a_2kb_xlsx_reaching_xfd1048576_fails_its_job_and_the_registry_keeps_serving(registry, city):
    for dimension in ("A1:XFD1048576", None, "A1:H1"):  # declared, absent, lying
        content = xlsx(sheet_xml(header_cells() | {"XFD1048576": "x"}, dimension))
        assert len(content) < 2500
        job = await import_file(registry, city, content, filename="居民.xlsx")
        assert job["status"] == "failed" and job["processed"] == 0, job
        assert job["error"].startswith("工作表的使用区域达到 1,048,576 行") and "used range" in job["error"]
    await still_serving(registry, city)


async def test_a_sheet_too_wide_for_the_cell_budget_is_refused_before_loading(registry, city):
    content = xlsx(sheet_xml(header_cells() | {"DZ200000": "x"}))
    job = await import_file(registry, city, content, filename="宽表.xlsx")
    assert job["status"] == "failed" and "130 列" in job["error"], job


async def test_cells_without_references_are_counted_as_the_reader_counts_them(registry, city):
    sheet = sheet_xml(header_cells()).replace(
        "</sheetData>", '<row r="1048000">' + "<c/>" * 300 + '<c t="inlineStr"><is><t>x</t></is></c></row></sheetData>')
    job = await import_file(registry, city, xlsx(sheet), filename="居民.xlsx")
    assert job["status"] == "failed" and "1,048,000 行" in job["error"], job


async def test_a_zip_bomb_is_refused_by_its_compression_ratio(registry, city):
    bomb = b"<sst xmlns=\"" + _NS.encode() + b"\">" + b"<si><t>a</t></si>" * 12_000_000 + b"</sst>"
    content = xlsx(sheet_xml(header_cells()), {"xl/sharedStrings.xml": bomb})
    assert len(content) < 1_000_000
    job = await import_file(registry, city, content, filename="居民.xlsx")
    assert job["status"] == "failed" and "压缩炸弹" in job["error"] and "zip bomb" in job["error"], job
    await still_serving(registry, city)


def _lie_about_size(content: bytes, name: str, declared: int) -> bytes:
    """The zip with `name`'s uncompressed size (local header and central directory) set to `declared`."""
    data = bytearray(content)
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = 0
        while (at := data.find(signature, at)) >= 0:
            if data[at + name_at: at + name_at + len(encoded)] == encoded:
                data[at + size_at: at + size_at + 4] = struct.pack("<I", declared)
            at += 4
    return bytes(data)


async def test_a_part_larger_than_it_declares_is_refused(registry, city):
    cells = header_cells() | {f"A{r}": "x" for r in range(2, 400)}
    content = xlsx(sheet_xml(cells, "A1:H1"))
    job = await import_file(registry, city, _lie_about_size(content, "xl/worksheets/sheet1.xml", 400),
                            filename="居民.xlsx")
    assert job["status"] == "failed" and "大小与实际内容不符" in job["error"], job


async def test_a_csv_line_beyond_64_kb_fails_the_job_naming_the_line(registry, city):
    content = csv_bytes([person(), person(address="长" * 30_000)])
    job = await import_file(registry, city, content)
    assert job["status"] == "failed" and job["processed"] == 0, job
    assert "第 3 行过长" in job["error"] and "line 3" in job["error"]
    await still_serving(registry, city)
