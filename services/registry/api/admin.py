"""Operations on the registry's event history: re-publish its current state (city only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.registry import store
from services.registry.republish import SOURCES, jobs_of, run_in_service
from shared.auth import Principal, Role, require_roles
from shared.messaging.snapshots import job_view
from shared.problems import BadRequest, NotFound
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1/admin", tags=["operations"])
CityOnly = Annotated[Principal, Depends(require_roles(Role.CITY))]
PROBLEMS = {400: {"description": "Unknown source"}, 401: {"description": "No or invalid token"},
            403: {"description": "Not the city role"}, 404: {"description": "No such job"}}
SOURCE_NAMES = [s.name for s in SOURCES]


class RepublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[str] | None = Field(None, min_length=1, description=f"what to re-publish (default all: "
                                                                      f"{', '.join(SOURCE_NAMES)})")
    chunk_size: int = Field(1000, ge=1, le=10_000, description="rows per transaction")


@router.post("/republish", status_code=202, responses=PROBLEMS,
             summary="Re-publish every resident and kept county report as versioned snapshots (city only)")
async def start_republish(principal: CityOnly, runtime: RuntimeDep,
                          request: Annotated[RepublishRequest | None, Body()] = None) -> JSONResponse:
    """Start an incremental snapshot job: rows in primary-key order, a chunk per transaction through
    the outbox, interleaved with live traffic, resumable. Follow it at the Location."""
    request = request or RepublishRequest()
    for i, name in enumerate(request.sources or ()):
        if name not in SOURCE_NAMES:
            raise BadRequest(f"'{name}' is not a source; choose from {', '.join(SOURCE_NAMES)}.",
                             field=f"sources.{i}")
    jobs = jobs_of(runtime)
    async with runtime.db.transaction() as conn:
        job = await jobs.create(conn, principal.subject, request.sources, request.chunk_size)
    run_in_service(runtime, job["id"])
    return JSONResponse(job_view(job), status_code=202, headers={"Location": f"/v1/admin/republish/{job['id']}"})


@router.get("/republish/{job_id}", responses=PROBLEMS, summary="A re-publish job's progress (city only)")
async def republish_status(job_id: uuid.UUID, principal: CityOnly, runtime: RuntimeDep) -> dict:
    """Position, rows emitted of the total, and the outbox rows the relay has still to publish (the
    job's events are on the broker once it has succeeded and `unpublished` reached 0)."""
    jobs = jobs_of(runtime)
    async with runtime.db.transaction() as conn:
        job = await jobs.get(conn, job_id)
        if job is None:
            raise NotFound("No re-publish job has this id.", field="job_id")
        unpublished = await jobs.unpublished(conn)
    return {**job_view(job), "unpublished": unpublished}


@router.post("/republish/{job_id}/resume", status_code=202, responses=PROBLEMS,
             summary="Carry on a stopped or failed job from its persisted position (city only)")
async def resume_republish(job_id: uuid.UUID, principal: CityOnly, runtime: RuntimeDep) -> dict:
    jobs = jobs_of(runtime)
    async with runtime.db.transaction() as conn:
        job = await jobs.get(conn, job_id)
    if job is None:
        raise NotFound("No re-publish job has this id.", field="job_id")
    if job["status"] != "succeeded":
        run_in_service(runtime, job_id)
    return job_view(job)


@router.get("/republish", responses=PROBLEMS, summary="Recent re-publish jobs (city only)")
async def list_republish(principal: CityOnly, runtime: RuntimeDep) -> dict:
    async with runtime.db.transaction() as conn:
        rows = await store.recent_republish_jobs(conn)
    return {"jobs": [job_view(r) for r in rows]}
