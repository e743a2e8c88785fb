"""The service menu as a county's residents can order it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.orders import handlers
from shared.auth import CurrentPrincipal
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/catalog", summary="The menu for a county: items, units, base prices, who may order, providers",
            responses={401: {"description": "No or invalid token"}, 422: {"description": "Unknown county"}})
async def get_catalog(principal: CurrentPrincipal, runtime: RuntimeDep,
                      county: Annotated[str, Query(min_length=6, max_length=6)]) -> dict:
    handlers.known_county(county, "county")
    async with runtime.db.connection() as conn:
        items = await handlers.catalog(conn, county)
    return {"county_code": county, "items": items}
