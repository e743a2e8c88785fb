"""GET /v1/alerts/stream: Server-Sent Events of alert steps in the caller's scope; `id` is the step's
sequence number, so a reconnecting EventSource resumes with Last-Event-ID (or ?since=)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from services.alerts.api.deps import StreamReader, present
from services.alerts.stream import PAGE, StepNotifier, steps_since
from shared.auth import Principal, Role
from shared.problems import BadRequest
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["alerts"])


def notifier_of(runtime) -> StepNotifier:
    return runtime.state["notifier"]  # type: ignore[return-value]


def frame(row, principal: Principal) -> bytes:
    body = {"seq": row["seq"], "kind": row["kind"], "at": row["step_at"], "actor": row["actor"],
            "alert": present(row, principal)}
    if principal.role != Role.VIEWER:
        body["data"] = row["step_data"]
    return f"id: {row['seq']}\nevent: {row['kind']}\ndata: ".encode() + orjson.dumps(body) + b"\n\n"


@router.get("/alerts/stream", summary="Server-Sent Events of alert changes in the caller's scope",
            response_class=StreamingResponse)
async def stream(request: Request, principal: StreamReader, runtime: RuntimeDep,
                 since: Annotated[int | None, Query(ge=0, description="resume after this sequence number")] = None,
                 last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None) -> StreamingResponse:
    raw = since if since is not None else last_event_id
    try:
        resume = int(raw) if raw not in (None, "") else None
    except ValueError:
        raise BadRequest("Last-Event-ID must be a sequence number.", field="Last-Event-ID") from None
    county = principal.county if principal.role == Role.COUNTY else None
    notifier = notifier_of(runtime)
    sub = notifier.subscribe(county)
    start = notifier.last_seq if resume is None else resume

    async def events():
        last = start
        try:
            yield f"retry: 1000\nid: {last}\nevent: ready\ndata: {{\"seq\": {last}}}\n\n".encode()
            while True:
                # Catch up from the table (a resume, or an overflowed queue), then follow the queue.
                while True:
                    async with runtime.db.connection() as conn:
                        rows = await steps_since(conn, last, county)
                    for row in rows:
                        yield frame(row, principal)
                        last = row["seq"]
                    if len(rows) < PAGE:
                        break
                sub.overflowed = False
                while not sub.overflowed:
                    if await request.is_disconnected():
                        return
                    try:
                        row = await asyncio.wait_for(sub.queue.get(), timeout=15)
                    except asyncio.TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if row["seq"] <= last:
                        continue
                    yield frame(row, principal)
                    last = row["seq"]
                while not sub.queue.empty():
                    sub.queue.get_nowait()
        finally:
            notifier.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
