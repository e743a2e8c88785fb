"""Service orders: placing one (Idempotency-Key required), reading them in scope, and the
lifecycle steps, each one call into handlers.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from services.orders import handlers, store
from services.orders.api.schemas import AssignIn, CheckOutIn, ConfirmIn, OrderIn, RateIn, ReasonIn, VisitIn
from services.orders.domain.errors import OrderNotFound
from services.orders.domain.lifecycle import STATES
from services.orders.worker import orders_settings
from shared.auth import CurrentPrincipal, Role
from shared.cursors import MAX_CURSOR_LENGTH, cursor_secret, decode_cursor, encode_cursor
from shared.idempotency import StoredResponse, check_key, request_fingerprint
from shared.problems import BadRequest, Forbidden
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["orders"])
PROBLEMS = {400: {"description": "Bad request"}, 401: {"description": "No or invalid token"},
            403: {"description": "Outside the token's scope"}, 404: {"description": "No such order or resident"},
            409: {"description": "Not allowed in the order's current state (named), or over capacity"},
            412: {"description": "Stale If-Match"}, 422: {"description": "Invalid field or refused order"}}
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _response(row, principal, resident, status: int = 200) -> StoredResponse:
    return StoredResponse(status, handlers.order_view(row, principal, resident),
                          {"ETag": handlers.etag(row), "Location": f"/v1/orders/{row['id']}"})


def _json(response: StoredResponse) -> JSONResponse:
    return JSONResponse(response.body, status_code=response.status, headers=response.headers)


@router.post("/orders", status_code=201, responses=PROBLEMS, summary="Place an order from the menu")
async def place_order(body: OrderIn, request: Request, principal: CurrentPrincipal,
                      runtime: RuntimeDep) -> JSONResponse:
    if not request.headers.get("Idempotency-Key"):
        raise BadRequest("Orders are placed with an Idempotency-Key header (a retry must not order twice).",
                         field="Idempotency-Key")
    cmd = handlers.PlaceOrder(resident_id=body.resident_id, provider_id=body.provider_id,
                              items=[(i.service_code, i.quantity) for i in body.items],
                              scheduled_start=body.scheduled_start, channel=body.channel,
                              call_reference=body.call_reference)
    key = request.headers["Idempotency-Key"]
    check_key(key)
    claim = handlers.Claim(principal.subject, key,
                           request_fingerprint(request.method, request.url.path, body.model_dump(mode="json")))
    cfg = orders_settings(runtime)

    def respond(row, resident) -> StoredResponse:
        return _response(row, principal, resident, 201)

    async def place(lock_budgets: bool) -> tuple[StoredResponse, bool]:
        async with runtime.db.transaction() as conn:
            return await handlers.place_order(conn, principal, cmd, cfg, claim, respond, runtime.db.schema,
                                              lock_budgets=lock_budgets)

    try:
        answer, replayed = await place(False)
    except handlers.BudgetContended:
        # The transaction was rolled back whole; once more with the caps and budget rows locked.
        answer, replayed = await place(True)
    return JSONResponse(answer.body, status_code=answer.status,
                        headers={**answer.headers, "Idempotent-Replayed": "true"} if replayed else answer.headers)


CURSOR_ROUTE = "orders.list"


def _cursor(request: Request, row) -> str:
    return encode_cursor(cursor_secret(request), CURSOR_ROUTE, [row["placed_at"].isoformat(), str(row["id"])])


def _parse_cursor(request: Request, value: str) -> tuple[datetime, uuid.UUID]:
    at, oid = decode_cursor(cursor_secret(request), CURSOR_ROUTE, value, (str, str))
    return datetime.fromisoformat(at), uuid.UUID(oid)


@router.get("/orders", responses=PROBLEMS, summary="Orders in the token's scope, newest first")
async def list_orders(request: Request, principal: CurrentPrincipal, runtime: RuntimeDep,
                      state: Annotated[str | None, Query()] = None,
                      county: Annotated[str | None, Query(max_length=6)] = None,
                      provider: Annotated[str | None, Query(max_length=64)] = None,
                      resident_id: Annotated[uuid.UUID | None, Query()] = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None) -> dict:
    if state is not None and state not in STATES:
        raise BadRequest(f"state is one of {', '.join(STATES)}.", field="state")
    scope = {Role.COUNTY: ("county_code", principal.county), Role.PROVIDER: ("provider_id", principal.provider_id),
             Role.CAREGIVER: ("caregiver_id", principal.caregiver_id)}
    if principal.role == Role.VIEWER:
        raise Forbidden("The viewer role sees aggregates only.")
    equal = [scope[principal.role]] if principal.role in scope else []
    equal += [(column, value) for column, value in (("state", state), ("county_code", county),
                                                    ("provider_id", provider), ("resident_id", resident_id))
              if value is not None]
    before = _parse_cursor(request, cursor) if cursor else None
    async with runtime.db.connection() as conn:
        rows = await store.list_orders(conn, equal, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"orders": [handlers.order_view(r, principal) for r in rows],
            "next_cursor": _cursor(request, rows[-1]) if more else None}


@router.get("/orders/{order_id}", responses=PROBLEMS, summary="An order (ETag)")
async def get_order(order_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep) -> JSONResponse:
    async with runtime.db.connection() as conn:
        row = await store.fetch_order(conn, order_id)
        if row is None or not handlers.may_see_order(principal, row):
            raise OrderNotFound("No order has this id in the token's scope.", field="id")
        resident = await store.fetch_resident(conn, row["resident_id"])
    return _json(_response(row, principal, resident))


async def _act(runtime, principal, order_id: uuid.UUID, action: str, body: dict, if_match: str | None) -> JSONResponse:
    async with runtime.db.transaction() as conn:
        row, resident = await handlers.act(conn, principal, order_id, action, body, orders_settings(runtime), if_match)
    return _json(_response(row, principal, resident))


@router.post("/orders/{order_id}/accept", responses=PROBLEMS, summary="The provider accepts")
async def accept(order_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep,
                 if_match: IfMatch = None) -> JSONResponse:
    return await _act(runtime, principal, order_id, "accept", {}, if_match)


@router.post("/orders/{order_id}/reject", responses=PROBLEMS, summary="The provider rejects, with a reason")
async def reject(order_id: uuid.UUID, body: ReasonIn, principal: CurrentPrincipal, runtime: RuntimeDep,
                 if_match: IfMatch = None) -> JSONResponse:
    return await _act(runtime, principal, order_id, "reject", body.model_dump(), if_match)


@router.post("/orders/{order_id}/assign", responses=PROBLEMS,
             summary="The provider assigns a caregiver whose valid certificates allow every item")
async def assign(order_id: uuid.UUID, body: AssignIn, principal: CurrentPrincipal, runtime: RuntimeDep,
                 if_match: IfMatch = None) -> JSONResponse:
    return await _act(runtime, principal, order_id, "assign", body.model_dump(), if_match)


@router.post("/orders/{order_id}/check-in", responses=PROBLEMS, summary="The assigned caregiver arrives (EVV)")
async def check_in(order_id: uuid.UUID, body: VisitIn, principal: CurrentPrincipal, runtime: RuntimeDep,
                   if_match: IfMatch = None) -> JSONResponse:
    return await _act(runtime, principal, order_id, "check_in", body.model_dump(), if_match)


@router.post("/orders/{order_id}/check-out", responses=PROBLEMS, summary="The assigned caregiver leaves (EVV)")
async def check_out(order_id: uuid.UUID, body: CheckOutIn, principal: CurrentPrincipal, runtime: RuntimeDep,
                    if_match: IfMatch = None) -> JSONResponse:
    return await _act(runtime, principal, order_id, "check_out", body.model_dump(), if_match)


@router.post("/orders/{order_id}/cancel", responses=PROBLEMS, summary="Cancel before the visit, with a reason")
async def cancel(order_id: uuid.UUID, body: ReasonIn, principal: CurrentPrincipal, runtime: RuntimeDep,
                 if_match: IfMatch = None) -> JSONResponse:
    return await _act(runtime, principal, order_id, "cancel", body.model_dump(), if_match)


@router.post("/orders/{order_id}/rate", responses=PROBLEMS, summary="The resident's rating (1-5) of a completed order")
async def rate(order_id: uuid.UUID, body: RateIn, principal: CurrentPrincipal, runtime: RuntimeDep,
               if_match: IfMatch = None) -> JSONResponse:
    return await _act(runtime, principal, order_id, "rate", body.model_dump(), if_match)


@router.post("/orders/{order_id}/visit-exception", responses=PROBLEMS,
             summary="The caregiver or provider explains a visit that is an EVV exception")
async def explain(order_id: uuid.UUID, body: ReasonIn, principal: CurrentPrincipal, runtime: RuntimeDep,
                  if_match: IfMatch = None) -> JSONResponse:
    async with runtime.db.transaction() as conn:
        row, resident = await handlers.explain_visit(conn, principal, order_id, body.reason, if_match)
    return _json(_response(row, principal, resident))


@router.post("/orders/{order_id}/confirm-visit", responses=PROBLEMS,
             summary="The county confirms an explained exception visit, which makes it payable")
async def confirm(order_id: uuid.UUID, body: ConfirmIn, principal: CurrentPrincipal, runtime: RuntimeDep,
                  if_match: IfMatch = None) -> JSONResponse:
    async with runtime.db.transaction() as conn:
        row, resident = await handlers.confirm_visit(conn, principal, order_id, body.note, if_match)
    return _json(_response(row, principal, resident))
