"""Counts recomputed from the registry's own rows, bucketed exactly as reporting folds events
(status for everyone; birth month, gender, living arrangement, ability level, category and family
bed for active residents). Reporting's /v1/consistency compares its aggregates with these."""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Depends

from shared.auth import Role, require_roles
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["residents"])

STATS_SQL = """
SELECT county_code, 'status' AS dim, status AS bucket, count(*) AS n FROM residents GROUP BY 1, 3
UNION ALL
SELECT county_code, 'birth_month', to_char(birth_date, 'YYYY-MM'), count(*) FROM residents
 WHERE status = 'active' GROUP BY 1, 3
UNION ALL
SELECT county_code, 'gender', gender, count(*) FROM residents WHERE status = 'active' GROUP BY 1, 3
UNION ALL
SELECT county_code, 'living_arrangement', living_arrangement, count(*) FROM residents
 WHERE status = 'active' GROUP BY 1, 3
UNION ALL
SELECT county_code, 'ability_level', coalesce(ability_level::text, 'unassessed'), count(*) FROM residents
 WHERE status = 'active' GROUP BY 1, 3
UNION ALL
SELECT county_code, 'category', c, count(*) FROM residents, unnest(categories) AS c
 WHERE status = 'active' GROUP BY 1, 3
UNION ALL
SELECT county_code, 'family_bed', 'yes', count(*) FROM residents WHERE status = 'active' AND family_bed GROUP BY 1
"""


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
