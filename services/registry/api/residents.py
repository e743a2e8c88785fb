"""Residents: register, read (masked unless revealed and audited), correct, assess, record a
death, transfer, search; the audit log of unmasked reads."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from shared.http import FastJSONResponse

from services.registry import handlers, store
from services.registry.api.schemas import AssessmentIn, DeathIn, ResidentIn, ResidentPatch, SearchIn, TransferIn
from services.registry.domain.access import MAX_REASON_CHARS, MAX_REASON_HEADER_BYTES, MIN_REASON_CHARS
from services.registry.domain.errors import InvalidRecord, VersionRequired
from services.registry.domain.residents import (
    normalise_categories, normalise_living_arrangement, normalise_phone, validate_resident,
)
from services.registry.search import SearchQuery, search
from shared.api import idempotent_write
from shared.auth import CurrentPrincipal, Role, require_roles
from shared.cursors import MAX_CURSOR_LENGTH, cursor_secret, decode_cursor, encode_cursor
from shared.idcard import IdNumberError, parse_id_number
from shared.idempotency import StoredResponse
from shared.privacy import keyed_hash
from shared.regions import load_counties
from shared.service import RuntimeDep, runtime_of

router = APIRouter(prefix="/v1", tags=["residents"])
PROBLEMS = {400: {"description": "Bad request"}, 401: {"description": "No or invalid token"},
            403: {"description": "Outside the token's scope"}, 404: {"description": "No such resident"},
            409: {"description": "Conflict"}, 412: {"description": "Stale If-Match"},
            422: {"description": "Invalid field"}, 428: {"description": "If-Match required"}}


def known_counties() -> frozenset[str]:
    return frozenset(load_counties())


def _invalid(errors) -> InvalidRecord:
    first = errors[0]
    return InvalidRecord(first.message, field=first.field,
                         errors=[{"field": e.field, "message": e.message} for e in errors])


def _resident_response(row, status: int = 200, reveal: bool = False) -> StoredResponse:
    return StoredResponse(status, handlers.resident_view(row, reveal=reveal),
                          {"ETag": handlers.etag_of(row), "Location": f"/v1/residents/{row['id']}"})


@router.post("/residents", status_code=201, responses=PROBLEMS, summary="Register a resident")
async def register_resident(body: ResidentIn, request: Request, principal: CurrentPrincipal,
                            runtime: RuntimeDep) -> JSONResponse:
    fields, errors = validate_resident(body.model_dump(), known_counties(), handlers.today_local())
    if errors:
        raise _invalid(errors)
    handlers.require_personal_data_role(principal)
    principal.require_county(fields.county_code)

    async def write(conn) -> StoredResponse:
        return _resident_response(await handlers.register(conn, principal, fields), 201)

    return await idempotent_write(runtime, principal, request, body.model_dump(mode="json"), write)


_REVEAL_PARAMETERS = [
    {"name": "reveal", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
     "description": "show ID and phone numbers in clear (audited)"},
    {"name": "reason", "in": "query", "required": False,
     "schema": {"type": "string", "minLength": MIN_REASON_CHARS, "maxLength": MAX_REASON_CHARS},
     "description": "why (required with reveal; audited; a few words, not a placeholder)"},
    {"name": "X-Access-Reason", "in": "header", "required": False,
     "schema": {"type": "string", "minLength": MIN_REASON_CHARS, "maxLength": MAX_REASON_HEADER_BYTES},
     "description": "the reason, percent-encoded if not ASCII (at most 500 characters decoded)"},
]
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})


def reveal_request(request: Request) -> tuple[bool, str | None]:
    """`reveal` and its reason from the query string or the X-Access-Reason header. Parsed here, not
    declared as FastAPI parameters: this is the registry's hottest read and parameter resolution
    cost a sixth of it (the OpenAPI document still lists them, see _REVEAL_PARAMETERS). Both ways
    of sending a reason are capped alike; check_reveal then requires a real one."""
    query = request.query_params
    raw = query.get("reveal", "false").strip().lower()
    if raw not in _TRUE and raw not in _FALSE:
        raise InvalidRecord("reveal is true or false.", field="reveal")
    reason = query.get("reason")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise InvalidRecord(f"reason is at most {MAX_REASON_CHARS} characters.", field="reason")
    header = request.headers.get("x-access-reason")
    if header is not None and not reason:
        if len(header) > MAX_REASON_HEADER_BYTES:
            raise InvalidRecord(f"X-Access-Reason is at most {MAX_REASON_CHARS} characters.", field="X-Access-Reason")
        reason = unquote(header)
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidRecord(f"X-Access-Reason is at most {MAX_REASON_CHARS} characters.", field="X-Access-Reason")
    return raw in _TRUE, reason or None


@router.get("/residents/{resident_id}", responses=PROBLEMS, summary="A resident (masked unless revealed)",
            openapi_extra={"parameters": _REVEAL_PARAMETERS})
async def get_resident(resident_id: uuid.UUID, request: Request, principal: CurrentPrincipal) -> JSONResponse:
    reveal, reason = reveal_request(request)
    runtime = runtime_of(request)
    async with runtime.db.connection() as conn:
        row = await handlers.load_in_scope(conn, principal, resident_id)
        handlers.check_reveal(principal, row["county_code"], reveal, reason)
        if reveal:
            await handlers.audit_reveal(conn, principal, [row], handlers.check_reason(reason))
    return FastJSONResponse(handlers.resident_view(row, reveal=reveal), headers={"ETag": handlers.etag_of(row)})


@router.patch("/residents/{resident_id}", responses=PROBLEMS, summary="Correct a resident's record (If-Match)")
async def patch_resident(
    resident_id: uuid.UUID, body: ResidentPatch, principal: CurrentPrincipal, runtime: RuntimeDep,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> JSONResponse:
    if not if_match:
        raise VersionRequired("Send If-Match with the ETag you read, so no one's change is overwritten.",
                              field="If-Match")
    version = handlers.version_from_if_match(if_match, resident_id)
    changes = body.model_dump(exclude_unset=True)
    if ("home_lat" in changes) != ("home_lon" in changes) or (
            "home_lat" in changes and (changes["home_lat"] is None) != (changes["home_lon"] is None)):
        missing = "home_lon" if "home_lat" in changes and changes.get("home_lon") is None else "home_lat"
        raise InvalidRecord("home_lat and home_lon are set together (both null clears the location).",
                            field=missing)
    for key in ("home_lat", "home_lon"):
        if changes.get(key) is not None:
            changes[key] = round(changes[key], 6)
    for required in ("name", "township", "village", "living_arrangement", "family_bed", "family_doctor_contract"):
        if required in changes and changes[required] is None:
            raise InvalidRecord(f"{required} cannot be empty.", field=required)
    try:
        if changes.get("living_arrangement") is not None:
            changes["living_arrangement"] = normalise_living_arrangement(changes["living_arrangement"])
        if "categories" in changes:
            changes["categories"] = normalise_categories(changes["categories"])
    except ValueError as exc:
        field = "living_arrangement" if "living" in str(exc) else "categories"
        raise InvalidRecord(str(exc), field=field) from None
    for phone_field in ("phone", "emergency_phone"):
        if changes.get(phone_field) is not None:
            try:
                changes[phone_field] = normalise_phone(changes[phone_field])
            except ValueError as exc:
                raise InvalidRecord(f"{phone_field} {exc}", field=phone_field) from None
    async with runtime.db.transaction() as conn:
        row = await handlers.update(conn, principal, resident_id, version, changes)
    return JSONResponse(handlers.resident_view(row, reveal=False), headers={"ETag": handlers.etag_of(row)})


@router.post("/residents/{resident_id}/assessments", status_code=201, responses=PROBLEMS,
             summary="Record an ability assessment (GB/T 42195-2022)")
async def post_assessment(resident_id: uuid.UUID, body: AssessmentIn, request: Request,
                          principal: CurrentPrincipal, runtime: RuntimeDep) -> JSONResponse:
    cmd = handlers.AssessmentCommand(**body.model_dump())

    async def write(conn) -> StoredResponse:
        row, assessment = await handlers.record_assessment(conn, principal, resident_id, cmd)
        return StoredResponse(201, {"assessment": _assessment_view(assessment),
                                    "resident": handlers.resident_view(row, reveal=False)},
                              {"ETag": handlers.etag_of(row)})

    return await idempotent_write(runtime, principal, request, body.model_dump(mode="json"), write)


@router.get("/residents/{resident_id}/assessments", responses=PROBLEMS, summary="Assessment history")
async def list_assessments(resident_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        await handlers.load_in_scope(conn, principal, resident_id)
        rows = await store.assessments_of(conn, resident_id)
    return {"items": [_assessment_view(r) for r in rows]}


def _assessment_view(row) -> dict:
    return {"id": str(row["id"]), "level": row["level"], "total_score": row["total_score"], "items": row["items"],
            "reason": row["reason"], "assessor": row["assessor"], "assessed_on": row["assessed_on"].isoformat(),
            "notes": row["notes"], "recorded_at": row["created_at"].isoformat()}


@router.post("/residents/{resident_id}/death", responses=PROBLEMS, summary="Record a resident's death")
async def post_death(resident_id: uuid.UUID, body: DeathIn, request: Request, principal: CurrentPrincipal,
                     runtime: RuntimeDep) -> JSONResponse:
    async def write(conn) -> StoredResponse:
        return _resident_response(await handlers.record_death(conn, principal, resident_id, body.date_of_death))

    return await idempotent_write(runtime, principal, request, body.model_dump(mode="json"), write)


@router.post("/residents/{resident_id}/transfer", responses=PROBLEMS, summary="Move a resident to another county")
async def post_transfer(resident_id: uuid.UUID, body: TransferIn, request: Request, principal: CurrentPrincipal,
                        runtime: RuntimeDep) -> JSONResponse:
    async def write(conn) -> StoredResponse:
        row = await handlers.transfer(conn, principal, resident_id, body.to_county, body.township, body.village,
                                      body.address, known_counties())
        return _resident_response(row)

    return await idempotent_write(runtime, principal, request, body.model_dump(mode="json"), write)


@router.post("/residents/search", responses=PROBLEMS | {429: {"description": "Too many ID-number lookups"}},
             summary="Search residents (filters, ID-number lookup: audited, needs a reason)")
async def search_residents(body: SearchIn, request: Request, principal: CurrentPrincipal,
                           runtime: RuntimeDep) -> JSONResponse:
    secret = cursor_secret(request)
    id_number = None
    if body.id_number:
        try:
            id_number = parse_id_number(body.id_number).id_number
        except IdNumberError as exc:
            raise InvalidRecord(exc.message, field="id_number") from None
    if body.county_code and body.county_code not in known_counties():
        raise InvalidRecord(f"'{body.county_code}' is not a county code of this city.", field="county_code")
    levels = body.ability_level if isinstance(body.ability_level, list) else (
        [body.ability_level] if body.ability_level is not None else [])
    if any(not 0 <= lv <= 4 for lv in levels):
        raise InvalidRecord("ability_level is 0 to 4.", field="ability_level")
    if body.age_min is not None and body.age_max is not None and body.age_min > body.age_max:
        raise InvalidRecord("age_min is above age_max.", field="age_min")
    handlers.check_reveal(principal, body.county_code or principal.county, body.reveal, body.reason)
    after = uuid.UUID(decode_cursor(secret, "residents.search", body.cursor, (str,))[0]) if body.cursor else None
    query = SearchQuery(
        county_code=body.county_code, township=body.township, village=body.village, category=body.category,
        living_arrangement=body.living_arrangement, ability_levels=levels, age_min=body.age_min,
        age_max=body.age_max, status=body.status, gender=body.gender, name_prefix=body.name_prefix,
        id_number=id_number, limit=body.limit, after=after, with_total=body.with_total,
        family_doctor_contract=body.family_doctor_contract,
    )
    today = handlers.today_local()
    if id_number is not None:
        # Looking a person up by ID number is an identity access: a reason, an audit row (found or
        # not, the number only as its keyed hash) and a per-caller rate, in one transaction.
        handlers.require_personal_data_role(principal)
        reason = handlers.check_reason(body.reason)
        async with runtime.db.transaction() as conn:
            await handlers.check_lookup_rate(conn, principal)
            rows, last_id, total = await search(conn, principal, query, today)
            await handlers.audit_lookup(conn, principal, keyed_hash(secret, "audit/id-number", id_number),
                                        rows, reason)
            if body.reveal and rows:
                await handlers.audit_reveal(conn, principal, rows, reason, action="search_unmasked")
    else:
        async with runtime.db.connection() as conn:
            rows, last_id, total = await search(conn, principal, query, today)
            if body.reveal and rows:
                await handlers.audit_reveal(conn, principal, rows, handlers.check_reason(body.reason),
                                            action="search_unmasked")
    next_cursor = encode_cursor(secret, "residents.search", [str(last_id)]) if last_id else None
    # A response object, not a dict: FastAPI would otherwise walk every value with jsonable_encoder.
    return FastJSONResponse({"items": [handlers.resident_view(r, reveal=body.reveal, today=today) for r in rows],
                             "next_cursor": next_cursor, "total": total})


@router.get("/audit", responses=PROBLEMS, summary="Unmasked reads and ID-number lookups (city only)",
            dependencies=[Depends(require_roles(Role.CITY))])
async def list_audit(
    request: Request,
    runtime: RuntimeDep,
    resident_id: uuid.UUID | None = None,
    actor: str | None = Query(None, max_length=200),
    since: datetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=MAX_CURSOR_LENGTH, description="the next_cursor of the previous page"),
) -> dict:
    secret = cursor_secret(request)
    before = decode_cursor(secret, "audit", cursor, (int,))[0] if cursor else None
    async with runtime.db.transaction() as conn:
        rows = await store.audit_page(conn, resident_id=resident_id, actor=actor, since=since, before=before,
                                      limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [{"id": r["id"], "at": r["at"].isoformat(), "actor": r["actor"], "role": r["role"],
                   "county_code": r["county_code"], "action": r["action"],
                   "resident_id": str(r["resident_id"]) if r["resident_id"] else None,
                   "fields": list(r["fields"]), "reason": r["reason"], "trace_id": r["trace_id"],
                   "id_number_hash": r["id_number_hash"]} for r in rows],
        "next_cursor": encode_cursor(secret, "audit", [rows[-1]["id"]]) if more else None,
    }
