"""Bulk imports: a county's spreadsheet (CSV or XLSX) in, a job to follow, an error report out."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from python_multipart.multipart import MultipartParser, parse_options_header

from services.registry import handlers, store
from services.registry.domain.imports import (
    MAX_ROWS, ImportJobNotFound, UnsupportedImportFile, too_many_rows_message,
)
from services.registry.importer import UploadSink, check_capacity, create_job, import_dir, start_import
from shared.auth import CurrentPrincipal, Principal, Role
from shared.cursors import MAX_CURSOR_LENGTH, cursor_secret, decode_cursor, encode_cursor
from shared.privacy import spreadsheet_cell
from shared.http import unstorable
from shared.problems import BadRequest, Forbidden, PayloadTooLarge, Unprocessable
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["imports"])
PROBLEMS = {400: {"description": "Bad request"}, 401: {"description": "No or invalid token"},
            403: {"description": "Outside the token's scope"}, 404: {"description": "No such import"},
            413: {"description": "More than 1,000,000 rows, or a body over the size limit"},
            415: {"description": "Not a CSV or XLSX file"}, 503: {"description": "Too many imports at once"}}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
RAW_TYPES = {"text/csv", "text/plain", "application/csv", "text/tab-separated-values", XLSX,
             "application/vnd.ms-excel", "application/octet-stream"}
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "CSV (UTF-8 or GB18030) or XLSX; headers in Chinese or English"}}}},
        "text/csv": {"schema": {"type": "string", "format": "binary"}},
        XLSX: {"schema": {"type": "string", "format": "binary"}},
    },
}


def _links(job_id: uuid.UUID | str) -> dict:
    return {"self": f"/v1/imports/{job_id}", "errors": f"/v1/imports/{job_id}/errors"}


def job_view(row: asyncpg.Record, warnings: list[str] | None = None, now: datetime | None = None) -> dict:
    """What a clerk sees of a job: where it is, what it did, what went wrong."""
    now = now or datetime.now(timezone.utc)
    status = row["status"]
    processed, total = row["processed"], row["total_rows"]
    if status == "succeeded":
        percent = 100.0
    elif total:
        percent = min(round(processed * 100 / total, 1), 99.9)
    else:
        percent = 0.0
    # Jobs start when created (one import at a time per service process, they seldom wait).
    started = row["created_at"] if status != "queued" else None
    elapsed = ((row["finished_at"] or now) - started).total_seconds() if started else 0
    return {
        "job_id": str(row["id"]), "status": status, "filename": row["filename"],
        "county_code": row["county_code"], "created_by": row["actor"], "file_sha256": row["file_sha256"],
        "total_rows": max(total, processed), "processed": processed, "accepted": row["accepted"],
        "updated": row["updated"], "unchanged": row["unchanged"], "rejected": row["rejected"],
        "percent": percent,
        "created_at": row["created_at"].isoformat(), "started_at": started.isoformat() if started else None,
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "rows_per_second": round(processed / elapsed) if elapsed > 0 else None,
        "warnings": warnings if warnings is not None else [], "error": row["error"],
        "links": _links(row["id"]),
    }


def _require_import_role(principal: Principal) -> None:
    handlers.require_personal_data_role(principal)


async def _load_job(conn: asyncpg.Connection, principal: Principal, job_id: uuid.UUID) -> asyncpg.Record:
    _require_import_role(principal)
    row = await store.fetch_import_job(conn, job_id)
    if row is None:
        raise ImportJobNotFound("No import has this id.", field="job_id")
    if principal.role != Role.CITY and row["county_code"] != principal.county:
        raise Forbidden("This import belongs to another county (or to the city).", field="job_id")
    return row


# ---------------------------------------------------------------- upload --------------------


async def _receive(request: Request, sink: UploadSink) -> str | None:
    """Stream the body into `sink`; returns the file name the client gave."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise BadRequest("The multipart body names no boundary.", field="file")
        return await _receive_multipart(request, boundary, sink)
    if content_type.decode("latin-1") in RAW_TYPES:
        async for chunk in request.stream():
            sink.write(chunk)
        return request.query_params.get("filename")
    raise UnsupportedImportFile(
        "Send the spreadsheet as multipart/form-data (field `file`), or as the body with Content-Type "
        "text/csv or the XLSX type.", field="file")


async def _receive_multipart(request: Request, boundary: bytes, sink: UploadSink) -> str | None:
    # python-multipart's streaming parser: the file part goes straight to disk, never whole into memory.
    state: dict = {"header": b"", "value": b"", "headers": {}, "in_file": False, "found": False,
                   "filename": None}

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header"].lower()] = state["value"]
        state["header"] = state["value"] = b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        if disposition.get(b"name") == b"file" and not state["found"]:
            state["in_file"] = state["found"] = True
            raw = disposition.get(b"filename")
            if raw is not None:
                try:  # browsers send UTF-8 names: 濮阳县老年人.xlsx
                    state["filename"] = raw.decode("latin-1").encode("latin-1").decode("utf-8")
                except UnicodeDecodeError:
                    state["filename"] = raw.decode("latin-1")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["in_file"]:
            sink.write(data[start:end])

    def on_part_end() -> None:
        state["in_file"] = False

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except Exception as exc:  # python-multipart's parse errors
        if type(exc).__module__.startswith("python_multipart"):
            raise BadRequest(f"The multipart body is malformed: {exc}", field="file") from None
        raise
    if not state["found"]:
        raise BadRequest("Send the spreadsheet in the form field `file`.", field="file")
    return state["filename"]


@router.post("/imports", status_code=202, responses=PROBLEMS, openapi_extra={"requestBody": UPLOAD_BODY},
             summary="Import residents from a spreadsheet (CSV or XLSX, up to 1,000,000 rows)")
async def post_import(request: Request, principal: CurrentPrincipal, runtime: RuntimeDep) -> JSONResponse:
    """Store the file, queue a job and answer at once; follow the job at `links.self`.

    A county token imports its own county's rows (rows of another county are rejected one by one); a city
    token any county's. Re-importing a file changes nothing; changed rows update their residents."""
    _require_import_role(principal)
    check_capacity()
    folder = import_dir(runtime.settings.eldercare_state_dir)
    sink = UploadSink(folder / f"upload-{uuid.uuid4().hex}.part")
    try:
        filename = await _receive(request, sink)
        sink.close()
        if filename and unstorable(filename):
            raise Unprocessable("filename: must not contain a NUL character", field="filename")
        if sink.size == 0:
            raise BadRequest("The file is empty.", field="file")
        if sink.kind == "csv" and sink.data_lines > MAX_ROWS:
            raise PayloadTooLarge(too_many_rows_message(sink.data_lines), field="file", max_rows=MAX_ROWS)
        scope = principal.county if principal.role == Role.COUNTY else None
        async with runtime.db.transaction() as conn:
            job_id = await create_job(conn, actor=principal.subject, county_code=scope,
                                      filename=(filename or "")[:200] or None, sha256=sink.sha256,
                                      total_rows=sink.data_lines if sink.kind == "csv" else 0)
        path = sink.path.rename(folder / f"{job_id}.{sink.kind}")
    except BaseException:
        sink.discard()
        raise
    start_import(runtime, job_id, Path(path), scope_county=scope)
    body = {"job_id": str(job_id), "status": "queued", "links": _links(job_id)}
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/imports/{job_id}"})


# ---------------------------------------------------------------- progress ------------------


@router.get("/imports/{job_id}", responses=PROBLEMS, summary="An import's progress and outcome")
async def get_import(job_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        row = await _load_job(conn, principal, job_id)
        warnings = await store.import_warnings(conn, job_id)
    return job_view(row, warnings)


def _encode_cursor(secret: str, row: asyncpg.Record) -> str:
    return encode_cursor(secret, "imports", [row["created_at"].isoformat(), str(row["id"])])


def _decode_cursor(secret: str, cursor: str) -> tuple[datetime, uuid.UUID]:
    at, job = decode_cursor(secret, "imports", cursor, (str, str))
    return datetime.fromisoformat(at), uuid.UUID(job)


@router.get("/imports", responses=PROBLEMS, summary="Imports the caller may see, newest first")
async def list_imports(
    request: Request, principal: CurrentPrincipal, runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH,
                                        description="the next_cursor of the previous page")] = None,
) -> dict:
    _require_import_role(principal)
    secret = cursor_secret(request)
    county = principal.county if principal.role != Role.CITY else None
    before = _decode_cursor(secret, cursor) if cursor else None
    async with runtime.db.transaction() as conn:
        rows = await store.import_jobs_page(conn, county_code=county, before=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    now = datetime.now(timezone.utc)
    items = []
    for row in rows:
        view = job_view(row, now=now)
        view.pop("warnings")
        items.append(view)
    return {"items": items, "next_cursor": _encode_cursor(secret, rows[-1]) if more else None}


# ---------------------------------------------------------------- error report --------------

REPORT_HEADERS = ("行号", "列", "值", "问题")


@router.get("/imports/{job_id}/errors", responses=PROBLEMS,
            summary="The error report: row, column, value (ID and phone numbers masked), message")
async def get_import_errors(
    job_id: uuid.UUID, request: Request, principal: CurrentPrincipal, runtime: RuntimeDep,
    format: Annotated[Literal["csv", "json"], Query(description="csv (opens in Excel) or json")] = "csv",
    limit: Annotated[int, Query(ge=1, le=10_000, description="json: rows per page")] = 1000,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH,
                                        description="json: the next_cursor of the previous page")] = None,
):
    """CSV in UTF-8 with a byte-order mark, so Excel shows the Chinese; headers 行号,列,值,问题. Row numbers
    count the header row as 1, as the spreadsheet shows them; a row may have several problems."""
    secret = cursor_secret(request)
    # The cursor is bound to its job: a page of one job's report never continues another's.
    after = decode_cursor(secret, f"imports.errors:{job_id}", cursor, (int,))[0] if cursor else 0
    async with runtime.db.transaction() as conn:
        await _load_job(conn, principal, job_id)
        if format == "json":
            page = await _errors_page(conn, job_id, limit, after)
            last = page["next_cursor"]
            page["next_cursor"] = encode_cursor(secret, f"imports.errors:{job_id}", [last]) if last else None
            return page
    name = quote(f"import-{job_id}-errors.csv")
    return StreamingResponse(_errors_csv(runtime, job_id), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


async def _errors_page(conn: asyncpg.Connection, job_id: uuid.UUID, limit: int, after: int) -> dict:
    # A page holds whole rows: `limit` spreadsheet rows with all their problems.
    rows, more = await store.import_errors_page(conn, job_id, limit, after)
    last = rows[-1]["row_no"] if rows else None
    return {"items": [{"row": r["row_no"], "column": r["column_name"], "value": r["value"] or "",
                       "message": r["message"]} for r in rows],
            "next_cursor": last if more else None}


async def _errors_csv(runtime, job_id: uuid.UUID) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REPORT_HEADERS)
    yield ("\ufeff" + buffer.getvalue()).encode()
    async with runtime.db.transaction() as conn:
        batch = 0
        buffer.seek(0)
        buffer.truncate()
        async for r in store.import_errors_cursor(conn, job_id):
            # What a clerk typed may start a formula (=HYPERLINK(...), +cmd|...): neutralised for Excel.
            writer.writerow((r["row_no"], spreadsheet_cell(r["column_name"]), spreadsheet_cell(r["value"] or ""),
                             spreadsheet_cell(r["message"])))
            batch += 1
            if batch >= 2000:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
                batch = 0
        if batch:
            yield buffer.getvalue().encode()
