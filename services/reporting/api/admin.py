"""Operations on reporting's state: rebuild from the event log, compare with the registry."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from types import SimpleNamespace

import httpx
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends

from services.reporting import queries
from services.reporting.api.aggregates import today_local
from services.reporting.domain.consistency import (
    compare_at_cut, compare_counts, compare_facilities, compare_training,
)
from services.reporting.worker import CONSUMER, broadcaster_of
from shared.auth import Principal, Role, issue_token, require_roles
from shared.buckets import resident_buckets
from shared.problems import ServiceUnavailable
from shared.service import RuntimeDep, ServiceRuntime

router = APIRouter(prefix="/v1", tags=["operations"])
CityOnly = Depends(require_roles(Role.CITY))
LOG_EXTENT_TIMEOUT_S = 10


@router.post("/admin/rebuild", summary="Rebuild every aggregate from the event log (city only)",
             dependencies=[CityOnly])
async def rebuild(runtime: RuntimeDep) -> dict:
    """Pause the consumer between batches, empty reporting's tables and its inbox, and consume the
    topics again from the beginning. Progress: GET /v1/admin/rebuild."""
    consumer = _consumer(runtime)
    async with consumer.lock:
        async with runtime.db.transaction() as conn:
            seq = await queries.reset_for_rebuild(conn, CONSUMER)
        broadcaster_of(runtime).reset(seq)
        await consumer.rewind()
        consumer.applied_total = 0
    runtime.state["rebuild_started"] = time.monotonic()
    return {"status": "rebuilding", "seq": seq}


@router.get("/admin/rebuild", summary="Rebuild progress: events applied and records still to consume",
            dependencies=[CityOnly])
async def rebuild_status(runtime: RuntimeDep) -> dict:
    consumer = _consumer(runtime)
    started = runtime.state.get("rebuild_started")
    return {"applied": consumer.applied_total, "lag": await consumer.lag(),
            "seconds": round(time.monotonic() - started, 2) if started else None}


@router.get("/admin/log", summary="How far back the broker's log reaches, per topic (city only)",
            dependencies=[CityOnly])
async def log_extent(runtime: RuntimeDep) -> dict:
    """First and end offset of every partition reporting reads, and the records between them: a
    rebuild sees only these (`eldercare replay reporting` re-publishes the registry's state when
    they cannot hold what reporting has folded)."""
    try:
        extent = await asyncio.wait_for(_consumer(runtime).log_extent(), LOG_EXTENT_TIMEOUT_S)
    except (KafkaError, asyncio.TimeoutError) as exc:
        # A broker that just restarted answers offsets only once its topics are back.
        raise ServiceUnavailable(f"The broker did not tell the log's offsets ({type(exc).__name__}); try again.",
                                 headers={"Retry-After": "2"}) from None
    if extent is None:
        raise ServiceUnavailable("The consumer is not connected to the broker yet; try again.",
                                 headers={"Retry-After": "2"})
    return {"topics": {topic: {
        "partitions": {str(p): {"first": first, "end": end} for p, (first, end) in sorted(parts.items())},
        "records": sum(max(0, end - first) for first, end in parts.values()),
        "starts_at_zero": all(first == 0 for first, _ in parts.values()),
    } for topic, parts in extent.items()}}


def _consumer(runtime: ServiceRuntime):
    if not runtime.consumers:
        raise ServiceUnavailable("This process runs no consumer (RUN_WORKERS_IN_API=false): rebuild where "
                                 "`eldercare worker reporting` runs.")
    return runtime.consumers[0]


# City only: each call makes the registry recount every resident once (seconds on 700,000
# rows), an operator's check rather than something every dashboard viewer token may start. Chosen
# over serving viewers a cached result: no viewer screen shows it, and a cache would need its own
# refresh policy.
@router.get("/consistency", summary="Compare the aggregates with counts recomputed from the registry's data, "
            "both at one cut (city only)", dependencies=[CityOnly])
async def consistency(runtime: RuntimeDep) -> dict:
    """Reporting's figures first (one snapshot), then the registry's (later snapshots): resident
    counts without the residents the registry changed within the window, on both sides; facilities
    report by report and training record by record, leaving out what is still on its way
    (domain/consistency.py). So a difference listed is a real one, under any live load."""
    async with runtime.db.connection() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            ours = await queries.load_counts(conn)  # the first read fixes reporting's snapshot
            our_facilities = await queries.facility_reports(conn)
            our_records = await queries.training_records(conn)
            our_totals = await queries.training_totals(conn)
            registry = await _registry_get(runtime, "/v1/stats/residents", {"recent_seconds": CONSISTENCY_WINDOW_S})
            reports = await _registry_get(runtime, "/v1/stats/reports", {})
            recent = registry.get("recent", [])
            states = await queries.residents_by_id(conn, [r["id"] for r in recent])
        lag = await runtime.consumers[0].lag() if runtime.consumers else None
    mine = [(s.county_code, resident_buckets(s)) for s in map(_state, states)]
    theirs = [(r["county_code"], [tuple(b) for b in r["buckets"]]) for r in recent]
    settled_in_both = {str(s["resident_id"]): s["version"] for s in states}
    differences = compare_at_cut(registry["counts"], ours, theirs, mine)
    for f in reports["facilities"]:
        f["reported_at"] = datetime.fromisoformat(f["reported_at"])
    facility_differences, facilities_in_flight = compare_facilities(reports["facilities"], our_facilities)
    training_differences, training_in_flight = compare_training(reports["training"], our_records, our_totals)
    differences += facility_differences + training_differences
    return {"consistent": not differences, "differences": differences[:200], "difference_count": len(differences),
            "registry_as_of": registry.get("as_of"), "window_seconds": CONSISTENCY_WINDOW_S,
            "recent_residents": len(recent),
            "in_flight": {"residents": sum(1 for r in recent if settled_in_both.get(r["id"]) != r["version"]),
                          "facility_reports": facilities_in_flight, "training_records": training_in_flight},
            "compared": {"facilities": len(reports["facilities"]), "training_records": len(reports["training"])},
            "consumer_lag": lag, "as_of": today_local().isoformat(),
            "note": "compared at one cut: residents the registry changed within window_seconds are taken out "
                    "of both sides, facility reports and training records still on their way are left out; "
                    "a difference listed is a real one"}


# Longer than the fold's delay (p99 well under a second) plus the registry's recount (seconds on
# the full city): every change still on its way falls inside it.
CONSISTENCY_WINDOW_S = 120


def _state(record) -> SimpleNamespace:
    return SimpleNamespace(**{**dict(record), "categories": tuple(record["categories"] or ())})


async def _registry_get(runtime, path: str, params: dict) -> dict:
    settings = runtime.settings
    token = issue_token(settings, Role.CITY, subject="service:reporting", ttl_seconds=120)
    base = f"http://{settings.service_host}:{settings.registry_port}"
    # An embedding process (tests, a single-process deployment) may hand over its own transport.
    transport = runtime.state.get("registry_transport")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30, transport=transport) as client:  # type: ignore[arg-type]
            response = await client.get(path, params=params,
                                        headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"The registry did not answer ({type(exc).__name__}); try again.") from None
    return response.json()


__all__ = ["router", "compare_counts", "Principal"]
