"""Providers and caregivers, managed by the city and by their county."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from services.orders import handlers
from services.orders.api.schemas import CaregiverIn, CaregiverPatch, ProviderIn, ProviderPatch
from services.orders.domain.errors import PartyNotFound, VersionRequired
from shared.api import idempotent_write
from shared.auth import CurrentPrincipal
from shared.idempotency import StoredResponse
from shared.problems import Forbidden
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["providers and caregivers"])
PROBLEMS = {401: {"description": "No or invalid token"}, 403: {"description": "Outside the token's scope"},
            404: {"description": "No such provider or caregiver"}, 409: {"description": "Id taken"},
            412: {"description": "Stale If-Match"}, 422: {"description": "Invalid field"},
            428: {"description": "If-Match required"}}
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _require_if_match(if_match: str | None) -> str:
    if not if_match:
        raise VersionRequired("Send If-Match with the ETag you read.", field="If-Match")
    return if_match


def _provider_response(row, items, status: int = 200) -> StoredResponse:
    return StoredResponse(status, handlers.provider_view(row, items),
                          {"ETag": handlers.etag(row), "Location": f"/v1/providers/{row['id']}"})


@router.post("/providers", status_code=201, responses=PROBLEMS, summary="Register a provider and its offer")
async def create_provider(body: ProviderIn, request: Request, principal: CurrentPrincipal,
                          runtime: RuntimeDep) -> JSONResponse:
    async def write(conn) -> StoredResponse:
        return _provider_response(*await handlers.create_provider(conn, principal, body.model_dump()), 201)

    return await idempotent_write(runtime, principal, request, body.model_dump(mode="json"), write)


@router.get("/providers", responses=PROBLEMS, summary="Providers (a county's own; a provider itself)")
async def list_providers(principal: CurrentPrincipal, runtime: RuntimeDep,
                         county: Annotated[str | None, Query(max_length=6)] = None) -> dict:
    async with runtime.db.connection() as conn:
        return {"providers": await handlers.list_providers(conn, principal, county)}


@router.get("/providers/{provider_id}", responses=PROBLEMS, summary="A provider and its offer")
async def get_provider(provider_id: str, principal: CurrentPrincipal, runtime: RuntimeDep) -> JSONResponse:
    async with runtime.db.connection() as conn:
        row, items = await handlers.provider_with_items(conn, provider_id)
    if not handlers.may_read_provider(principal, row["county_code"], row["id"]):
        raise Forbidden("This provider is outside the token's scope.", field="provider_id")
    response = _provider_response(row, items)
    return JSONResponse(response.body, headers=response.headers)


@router.patch("/providers/{provider_id}", responses=PROBLEMS, summary="Change a provider or its offer (If-Match)")
async def patch_provider(provider_id: str, body: ProviderPatch, principal: CurrentPrincipal, runtime: RuntimeDep,
                         if_match: IfMatch = None) -> JSONResponse:
    if_match = _require_if_match(if_match)
    async with runtime.db.transaction() as conn:
        row, items = await handlers.update_provider(conn, principal, provider_id, if_match,
                                                    body.model_dump(exclude_unset=True))
    response = _provider_response(row, items)
    return JSONResponse(response.body, headers=response.headers)


def _caregiver_response(principal, row, certs, status: int = 200) -> StoredResponse:
    return StoredResponse(status, handlers.caregiver_view(row, certs, principal, row["county_code"]),
                          {"ETag": handlers.etag(row), "Location": f"/v1/caregivers/{row['id']}"})


@router.post("/caregivers", status_code=201, responses=PROBLEMS, summary="Register a caregiver and certificates")
async def create_caregiver(body: CaregiverIn, request: Request, principal: CurrentPrincipal,
                           runtime: RuntimeDep) -> JSONResponse:
    async def write(conn) -> StoredResponse:
        return _caregiver_response(principal, *await handlers.create_caregiver(conn, principal, body.model_dump()),
                                   201)

    return await idempotent_write(runtime, principal, request, body.model_dump(mode="json"), write)


@router.get("/caregivers", responses=PROBLEMS, summary="Caregivers (phone masked outside city and county)")
async def list_caregivers(principal: CurrentPrincipal, runtime: RuntimeDep,
                          provider: Annotated[str | None, Query(max_length=64)] = None,
                          county: Annotated[str | None, Query(max_length=6)] = None) -> dict:
    async with runtime.db.connection() as conn:
        return {"caregivers": await handlers.list_caregivers(conn, principal, provider, county)}


@router.get("/caregivers/{caregiver_id}", responses=PROBLEMS, summary="A caregiver and certificates")
async def get_caregiver(caregiver_id: str, principal: CurrentPrincipal, runtime: RuntimeDep) -> JSONResponse:
    async with runtime.db.connection() as conn:
        row, certs = await handlers.caregiver_with_certificates(conn, caregiver_id)
    if not handlers.may_read_caregiver(principal, row):
        raise PartyNotFound("No caregiver has this id in the token's scope.", field="caregiver_id")
    response = _caregiver_response(principal, row, certs)
    return JSONResponse(response.body, headers=response.headers)


@router.patch("/caregivers/{caregiver_id}", responses=PROBLEMS, summary="Change a caregiver (If-Match)")
async def patch_caregiver(caregiver_id: str, body: CaregiverPatch, principal: CurrentPrincipal,
                          runtime: RuntimeDep, if_match: IfMatch = None) -> JSONResponse:
    if_match = _require_if_match(if_match)
    async with runtime.db.transaction() as conn:
        row, certs = await handlers.update_caregiver(conn, principal, caregiver_id, if_match,
                                                     body.model_dump(exclude_unset=True))
    response = _caregiver_response(principal, row, certs)
    return JSONResponse(response.body, headers=response.headers)
