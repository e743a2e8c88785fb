"""Operations on reporting's state: rebuild from the event log, compare with the registry."""

from __future__ import annotations

import asyncio
import time

import httpx
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends

from services.reporting import queries
from services.reporting.api.aggregates import today_local
from services.reporting.domain.folding import CITY
from services.reporting.worker import CONSUMER, broadcaster_of
from shared.auth import Principal, Role, issue_token, require_roles
from shared.problems import ServiceUnavailable
from shared.service import RuntimeDep, ServiceRuntime

router = APIRouter(prefix="/v1", tags=["operations"])
CityOnly = Depends(require_roles(Role.CITY))
LOG_EXTENT_TIMEOUT_S = 10
REBUILD_TABLES = ("residents", "agg_counts", "facilities", "training", "training_records", "county_activity")


@router.post("/admin/rebuild", summary="Rebuild every aggregate from the event log (city only)",
             dependencies=[CityOnly])
async def rebuild(runtime: RuntimeDep) -> dict:
    """Pause the consumer between batches, empty reporting's tables and its inbox, and consume the
    topics again from the beginning. Progress: GET /v1/admin/rebuild."""
    consumer = _consumer(runtime)
    async with consumer.lock:
        async with runtime.db.transaction() as conn:
            await conn.execute(f"TRUNCATE {', '.join(REBUILD_TABLES)}")
            await conn.execute("DELETE FROM inbox WHERE consumer = $1", CONSUMER)
            seq = await conn.fetchval("SELECT seq FROM stream_state WHERE id = 1")
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


# City only: each call makes the registry recount every resident three times (seconds on 700,000
# rows), an operator's check rather than something every dashboard viewer token may start. Chosen
# over serving viewers a cached result: no viewer screen shows it, and a cache would need its own
# refresh policy.
@router.get("/consistency", summary="Compare the aggregates with counts recomputed from the registry's data "
                                    "(city only)", dependencies=[CityOnly])
async def consistency(runtime: RuntimeDep) -> dict:
    # Both sides move while the city is live (the county simulator sets up a family bed every second
    # or so) and the registry's recount takes seconds on 700,000 rows: a one-off comparison would
    # report events still on their way. A difference is reported only if every one of a few
    # comparisons finds it.
    rounds: list[list[dict]] = []
    lag = None
    for attempt in range(CONSISTENCY_ATTEMPTS):
        if attempt:
            await asyncio.sleep(CONSISTENCY_PAUSE_S)
        registry_counts = await _registry_counts(runtime)
        async with runtime.db.transaction() as conn:
            ours = await queries.load_counts(conn)
            lag = await runtime.consumers[0].lag() if runtime.consumers else None
        rounds.append(compare_counts(registry_counts, ours))
        if not persistent_differences(rounds):
            break
    differences = persistent_differences(rounds)
    return {"consistent": not differences, "differences": differences[:200], "difference_count": len(differences),
            "comparisons": len(rounds), "consumer_lag": lag, "as_of": today_local().isoformat(),
            "note": "a difference is listed only if every comparison found it; differences while "
                    "consumer_lag > 0 are events still on their way"}


CONSISTENCY_ATTEMPTS = 3
CONSISTENCY_PAUSE_S = 0.5


async def _registry_counts(runtime) -> dict:
    settings = runtime.settings
    token = issue_token(settings, Role.CITY, subject="service:reporting", ttl_seconds=120, audience="registry")
    base = f"http://{settings.service_host}:{settings.registry_port}"
    # An embedding process (tests, a single-process deployment) may hand over its own transport.
    transport = runtime.state.get("registry_transport")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30, transport=transport) as client:  # type: ignore[arg-type]
            response = await client.get("/v1/stats/residents", headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"The registry did not answer ({type(exc).__name__}); try again.") from None
    return response.json()["counts"]


def persistent_differences(rounds: list[list[dict]]) -> list[dict]:
    """The differences of the latest comparison that every earlier comparison found as well (same
    scope, dimension and bucket; the counts themselves may have moved on)."""
    if not rounds:
        return []

    def key(d: dict) -> tuple:
        return d["scope"], d["dimension"], d["bucket"]

    seen = set.intersection(*({key(d) for d in r} for r in rounds))
    return [d for d in rounds[-1] if key(d) in seen]


def compare_counts(registry: dict, ours: dict) -> list[dict]:
    """Every (scope, dimension, bucket) whose count differs."""
    out = []
    scopes = set(registry) | {s for s in ours if s != CITY} | {CITY}
    for scope in sorted(scopes):
        theirs = registry.get(scope, {})
        mine = ours.get(scope, {})
        for dim in sorted(set(theirs) | set(mine)):
            for bucket in sorted(set(theirs.get(dim, {})) | set(mine.get(dim, {}))):
                a, b = theirs.get(dim, {}).get(bucket, 0), mine.get(dim, {}).get(bucket, 0)
                if a != b:
                    out.append({"scope": scope, "dimension": dim, "bucket": bucket, "registry": a, "reporting": b})
    return out


__all__ = ["router", "compare_counts", "Principal"]
