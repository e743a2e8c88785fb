"""Counts recomputed from the registry's own rows by the counting contract reporting folds events by
(shared/buckets.py). Reporting's /v1/consistency compares its aggregates with these.

One cut: the counts, and the residents changed in the last `recent_seconds` with the buckets they
count in, come from one snapshot (REPEATABLE READ). Reporting takes its own figures before asking,
takes both sides' contributions of those recent residents out, and compares the rest: whatever is
still on its way is inside the window, so a difference left over is a real one.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from fastapi import APIRouter, Depends, Query

from services.registry import store
from shared.auth import Role, require_roles
from shared.buckets import resident_buckets
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["residents"])


@router.get("/stats/residents", summary="Resident counts per county and dimension (no personal data)",
            dependencies=[Depends(require_roles(Role.CITY, Role.VIEWER))])
async def resident_stats(runtime: RuntimeDep, recent_seconds: float = Query(
        0, ge=0, le=3600, description="also list the residents changed this recently, from the same snapshot "
                                      "(id, version and the buckets they count in; no personal data)")) -> dict:
    counts: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    async with runtime.db.connection() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await store.resident_counts(conn)
            recent = await store.recently_changed(conn, recent_seconds) if recent_seconds else None
            as_of = await store.transaction_time(conn)
    for r in rows:
        for scope in (r["county_code"], "city"):
            bucket = counts[scope][r["dim"]]
            bucket[r["bucket"]] = bucket.get(r["bucket"], 0) + r["n"]
    body: dict = {"counts": counts, "as_of": as_of.isoformat()}
    if recent is not None:
        body["recent"] = [{"id": str(r["id"]), "county_code": r["county_code"], "version": r["version"],
                           "buckets": resident_buckets(_row(r))} for r in recent]
    return body


def _row(record) -> SimpleNamespace:
    return SimpleNamespace(**{**dict(record), "categories": tuple(record["categories"] or ())})


@router.get("/stats/reports", summary="The county reports the registry holds: latest per facility, every training "
            "record (no personal data)", dependencies=[Depends(require_roles(Role.CITY, Role.VIEWER))])
async def report_stats(runtime: RuntimeDep) -> dict:
    """One snapshot of the facility and training reports the ingest gateway accepted, for
    reporting's consistency check to compare facility by facility and record by record."""
    async with runtime.db.connection() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await store.county_reports(conn)
    facilities, training = [], []
    for r in rows:
        if r["facility_id"] is not None:
            facilities.append({"county_code": r["county_code"], "facility_id": r["facility_id"],
                               "facility_type": r["facility_type"], "beds": r["beds"],
                               "nursing_beds": r["nursing_beds"], "occupied": r["occupied"],
                               "reported_at": r["at"].isoformat()})
        elif r["trainees"] is not None:
            training.append({"county_code": r["county_code"], "event_id": r["event_id"], "trainees": r["trainees"]})
    return {"facilities": facilities, "training": training}
