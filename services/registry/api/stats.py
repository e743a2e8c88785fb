"""Counts recomputed from the registry's own rows by the counting contract reporting folds events by
(shared/buckets.py). Reporting's /v1/consistency compares its aggregates with these."""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Depends

from shared.auth import Role, require_roles
from shared.buckets import counts_sql
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["residents"])

STATS_SQL = counts_sql("residents")


@router.get("/stats/residents", summary="Resident counts per county and dimension (no personal data)",
            dependencies=[Depends(require_roles(Role.CITY, Role.VIEWER))])
async def resident_stats(runtime: RuntimeDep) -> dict:
    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    async with runtime.db.transaction() as conn:
        rows = await conn.fetch(STATS_SQL)
    for r in rows:
        for scope in (r["county_code"], "city"):
            bucket = counts[scope][r["dim"]]
            bucket[r["bucket"]] = bucket.get(r["bucket"], 0) + r["n"]
    return {"counts": counts}
