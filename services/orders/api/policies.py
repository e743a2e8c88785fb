"""Subsidy policies (versioned data), residents' monthly entitlements and counties' budgets."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from services.orders import handlers, store
from services.orders.api.schemas import PolicyIn
from services.orders.domain.policies import CITY, benefit_document, resolve
from shared.auth import CurrentPrincipal
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["subsidies"])
PROBLEMS = {401: {"description": "No or invalid token"}, 403: {"description": "Outside the token's scope"},
            404: {"description": "Unknown resident"}, 422: {"description": "Invalid field"}}
Month = Annotated[str | None, Query(description="YYYY-MM (default: this month)")]


@router.get("/policies", responses=PROBLEMS, summary="Every version of the city's policy and the county overrides")
async def list_policies(principal: CurrentPrincipal, runtime: RuntimeDep,
                        scope: Annotated[str | None, Query(max_length=6)] = None) -> dict:
    async with runtime.db.connection() as conn:
        rows = await store.policies(conn, scope)
    return {"policies": [handlers.policy_view(r) for r in rows]}


@router.get("/policies/in-force", responses=PROBLEMS, summary="The policy a county applies on a day")
async def policy_in_force(principal: CurrentPrincipal, runtime: RuntimeDep,
                          county: Annotated[str, Query(min_length=6, max_length=6)],
                          day: Annotated[date | None, Query()] = None) -> dict:
    handlers.known_county(county, "county")
    day = day or handlers.datetime.now(handlers.CST).date()
    async with runtime.db.connection() as conn:
        policy = resolve(await handlers.policy_versions(conn, county), county, day)
    return {"county_code": county, "day": day.isoformat(), "ref": policy.ref,
            "benefits": [benefit_document(b) for b in policy.benefits], "budgets": policy.budgets}


@router.post("/policies", status_code=201, responses=PROBLEMS,
             summary="A new version of the city's policy or a county override (city only)")
async def create_policy(body: PolicyIn, principal: CurrentPrincipal, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        row = await handlers.create_policy(conn, principal, body.model_dump())
    return handlers.policy_view(row)


@router.get("/entitlements/{resident_id}", responses=PROBLEMS,
            summary="A resident's monthly entitlement: quota, used and left per benefit")
async def get_entitlement(resident_id: uuid.UUID, principal: CurrentPrincipal, runtime: RuntimeDep,
                          month: Month = None) -> dict:
    month = handlers.parse_month(month)
    async with runtime.db.connection() as conn:
        return await handlers.entitlement(conn, principal, resident_id, month)


@router.get("/budgets", responses=PROBLEMS, summary="Counties' monthly budgets per funding source: spent and left")
async def get_budgets(principal: CurrentPrincipal, runtime: RuntimeDep,
                      county: Annotated[str | None, Query(max_length=6)] = None, month: Month = None) -> dict:
    month = handlers.parse_month(month)
    async with runtime.db.connection() as conn:
        return {"month": month, "counties": await handlers.budgets(conn, principal, county, month)}


__all__ = ["router", "CITY"]
