"""The alarm timeline: list and read alerts in the caller's scope, and the operator's actions."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query, Request

from services.alerts import handlers, queries
from services.alerts.api.deps import Operator, Reader, in_scope, present
from services.alerts.api.schemas import AckBody, DispatchBody, EscalateBody, ResolveBody
from shared.api import idempotent_write
from shared.auth import Principal, Role
from shared.cursors import cursor_secret, decode_cursor, encode_cursor
from shared.idempotency import StoredResponse
from shared.problems import Forbidden, NotFound
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["alerts"])
ERRORS = {403: {"description": "Outside the token's scope"}, 404: {"description": "No such alert in scope"},
          409: {"description": "Not allowed in the alert's state"}, 422: {"description": "Invalid field"}}


CURSOR_ROUTE = "alerts:list"


def encode_list_cursor(request: Request, raised_at: datetime, alert_id: uuid.UUID) -> str:
    return encode_cursor(cursor_secret(request), CURSOR_ROUTE, [raised_at.isoformat(), str(alert_id)])


def decode_list_cursor(request: Request, cursor: str) -> tuple[datetime, uuid.UUID]:
    at, alert_id = decode_cursor(cursor_secret(request), CURSOR_ROUTE, cursor, (str, str))
    return datetime.fromisoformat(at), uuid.UUID(alert_id)


def scope_counties(principal: Principal, county_code: str | None) -> str | None:
    """The county a listing is limited to: a county token sees only its own."""
    if principal.role == Role.COUNTY:
        if county_code is not None and county_code != principal.county:
            raise Forbidden("This token's scope does not cover that county.", field="county_code")
        return principal.county
    return county_code


@router.get("/alerts", summary="Alerts in the caller's scope, newest first (cursor pagination)")
async def list_alerts(
    request: Request, principal: Reader, runtime: RuntimeDep,
    status: Annotated[list[Literal["open", "acknowledged", "resolved"]] | None, Query()] = None,
    severity: Literal["critical", "warning"] | None = None,
    cause: Annotated[str | None, Query(max_length=50)] = None,
    county_code: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    level: Literal["county", "city"] | None = None,
    resident_id: uuid.UUID | None = None,
    since: datetime | None = None, until: datetime | None = None,
    include_silenced: bool = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict:
    after = decode_list_cursor(request, cursor) if cursor else None
    county = scope_counties(principal, county_code)
    async with runtime.db.connection() as conn:
        rows = await queries.list_alerts(conn, county=county, status=status, severity=severity, cause=cause,
                                         level=level, resident_id=resident_id, since=since, until=until,
                                         include_silenced=include_silenced, after=after, limit=limit + 1)
        seq = await queries.stream_seq(conn)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [present(r, principal) for r in rows], "stream_seq": seq,
            "next_cursor": encode_list_cursor(request, rows[-1]["raised_at"], rows[-1]["id"]) if more else None}


@router.get("/alerts/{alert_id}", summary="One alert with its timeline", responses=ERRORS)
async def get_alert(alert_id: uuid.UUID, principal: Reader, runtime: RuntimeDep) -> dict:
    async with runtime.db.connection() as conn:
        return await _view(conn, principal, alert_id)


async def _view(conn, principal: Principal, alert_id: uuid.UUID) -> dict:
    row = await queries.alert(conn, alert_id)
    if row is None or not in_scope(principal, row["county_code"]):
        raise NotFound("No such alert in this token's scope.", field="alert_id")
    steps = await queries.timeline(conn, alert_id)
    view = present(row, principal)
    view["timeline"] = [{"seq": s["seq"], "kind": s["kind"], "at": s["at"], "actor": s["actor"],
                         **({"data": s["data"]} if principal.role != Role.VIEWER else {})} for s in steps]
    return view


async def _act(request: Request, runtime, principal: Principal, alert_id: uuid.UUID, action: str, body: dict):
    async def write(conn) -> StoredResponse:
        await handlers.command(conn, principal, alert_id, action, body)
        view = await _view(conn, principal, alert_id)
        return StoredResponse(200, orjson.loads(orjson.dumps(view)), {})

    return await idempotent_write(runtime, principal, request, {"action": action, **body}, write)


@router.post("/alerts/{alert_id}/ack", summary="Acknowledge (stops the escalation timer)", responses=ERRORS)
async def acknowledge(alert_id: uuid.UUID, request: Request, principal: Operator, runtime: RuntimeDep,
                      body: AckBody | None = None):
    return await _act(request, runtime, principal, alert_id, "ack", (body or AckBody()).model_dump())


@router.post("/alerts/{alert_id}/dispatch", summary="Record who was sent or called", responses=ERRORS)
async def dispatch(alert_id: uuid.UUID, body: DispatchBody, request: Request, principal: Operator,
                   runtime: RuntimeDep):
    return await _act(request, runtime, principal, alert_id, "dispatch", body.model_dump())


@router.post("/alerts/{alert_id}/resolve", summary="Close with a resolution code", responses=ERRORS)
async def resolve(alert_id: uuid.UUID, body: ResolveBody, request: Request, principal: Operator,
                  runtime: RuntimeDep):
    return await _act(request, runtime, principal, alert_id, "resolve", body.model_dump())


@router.post("/alerts/{alert_id}/escalate", summary="Hand over to the city now", responses=ERRORS)
async def escalate(alert_id: uuid.UUID, request: Request, principal: Operator, runtime: RuntimeDep,
                   body: EscalateBody | None = None):
    return await _act(request, runtime, principal, alert_id, "escalate", (body or EscalateBody()).model_dump())


@router.get("/kpis", summary="Response KPIs per county and for the city (share acknowledged within 60 s and "
                             "180 s, median and p90 to acknowledge and resolve, escalations, visit coverage)")
async def kpis(principal: Reader, runtime: RuntimeDep, since: datetime | None = None,
               until: datetime | None = None, severity: Literal["critical", "warning"] | None = None) -> dict:
    county = scope_counties(principal, None)
    async with runtime.db.connection() as conn:
        return await queries.kpis(conn, county=county, since=since, until=until or datetime.now(timezone.utc),
                                  severity=severity)
