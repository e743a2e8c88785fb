"""Aggregates, targets, exports and the live stream (SSE and WebSocket)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta, timezone

import orjson
from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse

from services.reporting import queries
from services.reporting.api.auth import AggregateReader, StreamReader, check_aggregate_reader, county_scope
from services.reporting.domain.scope import may_see, scoped_delta, scoped_rows, scoped_snapshot
from services.reporting.worker import broadcaster_of
from shared.privacy import spreadsheet_safe
from shared.problems import Forbidden, NotFound, Problem
from shared.regions import load_counties
from shared.service import RuntimeDep, ServiceRuntime

router = APIRouter(prefix="/v1", tags=["aggregates"])


def today_local():
    return datetime.now(timezone(timedelta(hours=8))).date()


async def snapshot(runtime: ServiceRuntime, county: str | None = None) -> dict:
    """Every scope's aggregates, or (county set) that county's and the city's."""
    async with runtime.db.transaction() as conn:
        return scoped_snapshot(await queries.aggregates(conn, today_local()), county)


@router.get("/aggregates/city", summary="The city's aggregates (viewer and up; never personal data)")
async def city_aggregates(principal: AggregateReader, runtime: RuntimeDep) -> dict:
    snap = await snapshot(runtime)
    return {"seq": snap["seq"], **snap["scopes"]["city"]}


COUNTY_RESPONSES = {403: {"description": "Another county than the token's"},
                    404: {"description": "Unknown county (or township)"}}


def check_county(principal, code: str) -> None:
    """404 for a code that is no county of the city, 403 for another county than a county token's."""
    if code not in load_counties():
        raise NotFound(f"'{code}' is not a county code of this city.", field="code")
    if not may_see(county_scope(principal), code):
        raise Forbidden("This token's scope does not cover that county.", field="code")


@router.get("/aggregates/counties/{code}", summary="A county's aggregates (a county token: its own only)",
            responses=COUNTY_RESPONSES)
async def county_aggregates(code: str, principal: AggregateReader, runtime: RuntimeDep) -> dict:
    check_county(principal, code)
    snap = await snapshot(runtime)
    return {"seq": snap["seq"], **snap["scopes"][code]}


@router.get("/aggregates/counties/{code}/townships",
            summary="A county's townships and street offices, each with the county's resident dimensions, family "
                    "beds and the family-doctor KPI (a county token: its own county only)", responses=COUNTY_RESPONSES)
async def township_aggregates(code: str, principal: AggregateReader, runtime: RuntimeDep) -> dict:
    check_county(principal, code)
    today = today_local()
    async with runtime.db.connection() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # seq and counts at one cut
            seq, townships = await queries.township_views(conn, code, today)
    return {"seq": seq, "county_code": code, "as_of": today.isoformat(), "townships": townships}


@router.get("/aggregates/counties/{code}/townships/{township}/villages",
            summary="One township's villages and communities, with the same figures (a county token: its own "
                    "county only)", responses=COUNTY_RESPONSES)
async def village_aggregates(code: str, township: str, principal: AggregateReader, runtime: RuntimeDep) -> dict:
    check_county(principal, code)
    today = today_local()
    async with runtime.db.connection() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # seq and counts at one cut
            found = await queries.village_views(conn, code, township, today)
    if found is None:
        raise NotFound(f"'{township}' is not a township of county {code}.", field="township")
    seq, villages = found
    return {"seq": seq, "county_code": code, "township": township, "as_of": today.isoformat(),
            "villages": villages}


@router.get("/aggregates", summary="Every county and the city at once (what the dashboard loads; a county "
                                    "token: its own county and the city)")
async def all_aggregates(principal: AggregateReader, runtime: RuntimeDep) -> dict:
    return await snapshot(runtime, county_scope(principal))


async def targets_rows(runtime: ServiceRuntime, county: str | None) -> tuple[int, list[dict]]:
    """The task-list rows the reader may see; computed over every county first (the city's family
    bed target is apportioned over all of them), then scoped."""
    async with runtime.db.transaction() as conn:
        snap = await queries.aggregates(conn, today_local())
        last_heard = await queries.last_heard(conn)
    return snap["seq"], scoped_rows(queries.targets_table(snap["scopes"], last_heard, datetime.now(timezone.utc)),
                                    county)


@router.get("/targets", summary="The task-list table: per county and the city, target / actual / progress "
                                "(a county token: its own row and the city's)")
async def targets(principal: AggregateReader, runtime: RuntimeDep) -> dict:
    seq, rows = await targets_rows(runtime, county_scope(principal))
    return {"seq": seq, "as_of": today_local().isoformat(), "rows": rows}


# ------------------------------------------------------------------ exports (task-list layout)

# The bureau's table: leading columns, then the task list's column groups in the document's order,
# each with its official target, what is built (reported), this year's task and progress.
LEADING = [
    ("县区代码", lambda r: r["county_code"] if r["county_code"] != "city" else "410900"),
    ("县区", lambda r: r["name_zh"]),
    ("60岁以上老年人口（任务表）", lambda r: r["elderly_60plus"]["task_list"]),
    ("60岁以上老年人口（登记）", lambda r: r["elderly_60plus"]["registry"]),
]
STANDARD = [("目标", "target"), ("已建", "actual"), ("今年任务", "task_2022"), ("完成率", "progress")]
LIVE = ("按现登记人口需求", "live_requirement")
EXPORT_GROUPS: list[tuple[str, list[tuple[str, object]]]] = [
    ("养老床位", [*STANDARD[:2], LIVE, STANDARD[3],
              ("每千名老年人床位", lambda r: r["indicators"]["beds_per_1000"]["actual"]),
              ("护理型床位占比", lambda r: r["indicators"]["nursing_bed_share"]["actual"]),
              ("特困供养机构护理型床位占比", lambda r: r["indicators"]["nursing_bed_share_special_care"]["actual"]),
              ("入住率", lambda r: r["indicators"]["occupancy"]["actual"])]),
    ("县级特困供养服务机构", STANDARD),
    ("街道综合养老服务中心", STANDARD),
    ("社区日间照料中心", STANDARD),
    ("乡镇敬老院（提升改造）", STANDARD),
    ("村级养老服务设施（覆盖行政村）", STANDARD),
    ("养老护理人员培训（人次）", STANDARD),
    ("智慧养老平台（24小时内上报）", [*STANDARD[:2], STANDARD[3]]),
    ("家庭养老床位", [*STANDARD[:2], LIVE, STANDARD[3]]),
]
GROUP_INDICATOR = dict(zip([g for g, _ in EXPORT_GROUPS], [
    "beds", "facilities_county_special_care", "facilities_street_center", "facilities_daycare_center",
    "facilities_township_home", "facilities_happiness_home", "training", "smart_platform", "family_beds"]))
PERCENT_SUBS = {"完成率", "护理型床位占比", "特困供养机构护理型床位占比", "入住率"}


def _cell(group: str, field):
    if callable(field):
        return field
    key = GROUP_INDICATOR[group]
    return lambda r: r["indicators"][key].get(field)


def export_layout() -> list[tuple[str, str, object]]:
    """(group, sub-header, value of a row) per column; leading columns have no group."""
    return [("", name, fn) for name, fn in LEADING] + [
        (group, sub, _cell(group, field)) for group, subs in EXPORT_GROUPS for sub, field in subs]


def export_table(rows: list[dict]) -> tuple[list[tuple[str, str]], list[list]]:
    """Headers (group, sub) and the rows, the city row first as in the document."""
    layout = export_layout()
    ordered = [r for r in rows if r["county_code"] == "city"] + [r for r in rows if r["county_code"] != "city"]
    # Both exports are opened in a spreadsheet: no text cell may start a formula.
    return [(g, s) for g, s, _ in layout], spreadsheet_safe([fn(r) for _, _, fn in layout] for r in ordered)


@router.get("/exports/targets.csv", summary="The targets table as CSV (Chinese headers, UTF-8 with BOM)",
            response_class=Response)
async def export_csv(principal: AggregateReader, runtime: RuntimeDep) -> Response:
    _, rows = await targets_rows(runtime, county_scope(principal))
    headers, table = export_table(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([group + sub for group, sub in headers])
    writer.writerows(["" if v is None else v for v in row] for row in table)
    return Response(("\ufeff" + buffer.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=targets.csv"})


@router.get("/exports/targets.xlsx", summary="The targets table as an Excel workbook (Chinese headers)",
            response_class=Response)
async def export_xlsx(principal: AggregateReader, runtime: RuntimeDep) -> Response:
    import xlsxwriter

    _, rows = await targets_rows(runtime, county_scope(principal))
    headers, table = export_table(rows)
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("任务完成情况")
    bold = book.add_format({"bold": True, "text_wrap": True, "valign": "top", "align": "center",
                            "bg_color": "#DDEBF7", "border": 1})
    percent = book.add_format({"num_format": "0.0%"})
    # Row 1: the column groups (merged over their columns); row 2: the columns; data from row 3.
    col = 0
    while col < len(headers):
        group = headers[col][0]
        end = col
        while end + 1 < len(headers) and headers[end + 1][0] == group:
            end += 1
        if not group:
            for c in range(col, end + 1):
                sheet.merge_range(0, c, 1, c, headers[c][1], bold)
        else:
            if end > col:
                sheet.merge_range(0, col, 0, end, group, bold)
            else:
                sheet.write(0, col, group, bold)
            for c in range(col, end + 1):
                sheet.write(1, c, headers[c][1], bold)
        col = end + 1
    for i, row in enumerate(table, start=2):
        for j, value in enumerate(row):
            if value is None:
                continue
            sheet.write(i, j, value, percent if headers[j][1] in PERCENT_SUBS else None)
    sheet.freeze_panes(2, 2)
    sheet.set_column(0, 0, 10)
    sheet.set_column(1, 1, 12)
    sheet.set_column(2, len(headers) - 1, 12)
    book.close()
    return Response(buffer.getvalue(),
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": "attachment; filename=targets.xlsx"})


# ------------------------------------------------------------------ live stream


def _resume_point(last_event_id: str | None, since: int | None) -> int | None:
    raw = since if since is not None else last_event_id
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise Problem("Last-Event-ID must be a sequence number.", field="Last-Event-ID") from None


def _sse(event: str, data: dict, seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


@router.get("/stream", summary="Server-Sent Events: a snapshot, then deltas with sequence numbers (a county token: "
                                "its own county and the city only)", response_class=StreamingResponse)
async def stream(request: Request, principal: StreamReader, runtime: RuntimeDep,
                 since: int | None = Query(None, ge=0, description="resume after this sequence number"),
                 last_event_id: str | None = Header(None, alias="Last-Event-ID")) -> StreamingResponse:
    resume = _resume_point(last_event_id, since)
    county = county_scope(principal)
    broadcaster = broadcaster_of(runtime)
    sub = broadcaster.subscribe()

    async def events():
        try:
            yield b"retry: 1000\n\n"
            missed = broadcaster.missed_since(resume) if resume is not None else None
            if missed is None:
                snap = await snapshot(runtime, county)
                yield _sse("snapshot", snap, snap["seq"])
                last = snap["seq"]
            else:
                for delta in _visible(missed, county):
                    yield _sse("delta", delta, delta["seq"])
                last = missed[-1]["seq"] if missed else resume
            while True:
                if await request.is_disconnected():
                    return
                if sub.overflowed:
                    sub.overflowed = False
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    snap = await snapshot(runtime, county)
                    yield _sse("snapshot", snap, snap["seq"])
                    last = snap["seq"]
                    continue
                try:
                    delta = await asyncio.wait_for(sub.queue.get(), timeout=15)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if delta["seq"] <= last:
                    continue  # already in the snapshot or the replayed deltas
                last = delta["seq"]
                if (mine := scoped_delta(delta, county)) is not None:
                    yield _sse("delta", mine, mine["seq"])
        finally:
            broadcaster.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _visible(deltas: list[dict], county: str | None) -> list[dict]:
    """The deltas, each cut to the reader's scope; those with nothing left are not sent."""
    return [d for d in (scoped_delta(delta, county) for delta in deltas) if d is not None]


@router.websocket("/ws")
async def websocket_stream(websocket: WebSocket, since: int | None = None, access_token: str | None = None) -> None:
    """The same protocol over WebSocket: {"type": "snapshot"|"delta", "seq", "data"}; the client may
    send {"since": n} at any time to resume from n. The token comes as `access_token` (a browser's
    WebSocket cannot send a header) or in an Authorization header; frames are cut to its scope."""
    header = websocket.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else access_token
    try:
        principal = check_aggregate_reader(websocket, token)
    except Problem as exc:
        # Accept, then close with an application code (4401/4403) and the reason: a browser sees
        # why, where a refused handshake only says "failed".
        await websocket.accept()
        await websocket.close(code=4401 if exc.status == 401 else 4403, reason=exc.detail[:120])
        return
    county = county_scope(principal)
    runtime: ServiceRuntime = websocket.app.state.runtime
    broadcaster = broadcaster_of(runtime)
    await websocket.accept()
    sub = broadcaster.subscribe()
    try:
        last = await _ws_catch_up(websocket, runtime, broadcaster, since, county)
        receive = asyncio.create_task(websocket.receive_json())
        while True:
            get = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({receive, get}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
            if receive in done:
                get.cancel()
                message = receive.result()
                if isinstance(message, dict) and isinstance(message.get("since"), int):
                    last = await _ws_catch_up(websocket, runtime, broadcaster, message["since"], county)
                receive = asyncio.create_task(websocket.receive_json())
                continue
            if get in done:
                delta = get.result()
                if sub.overflowed:
                    sub.overflowed = False
                    last = await _ws_catch_up(websocket, runtime, broadcaster, None, county)
                elif delta["seq"] > last:
                    last = delta["seq"]
                    if (mine := scoped_delta(delta, county)) is not None:
                        await websocket.send_json({"type": "delta", "seq": mine["seq"], "data": mine})
            else:
                get.cancel()
                await websocket.send_json({"type": "ping"})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        broadcaster.unsubscribe(sub)


async def _ws_catch_up(websocket: WebSocket, runtime: ServiceRuntime, broadcaster, since: int | None,
                       county: str | None) -> int:
    missed = broadcaster.missed_since(since) if since is not None else None
    if missed is None:
        snap = await snapshot(runtime, county)
        await websocket.send_json({"type": "snapshot", "seq": snap["seq"], "data": snap})
        return snap["seq"]
    for delta in _visible(missed, county):
        await websocket.send_json({"type": "delta", "seq": delta["seq"], "data": delta})
    return missed[-1]["seq"] if missed else since  # type: ignore[return-value]
