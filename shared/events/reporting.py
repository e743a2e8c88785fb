"""What reporting publishes for any screen to subscribe to (topic eldercare.reporting.aggregates.v1).

One record per committed fold (a delta: the changed figures as new absolute values, so applying one
twice does no harm) and, now and then, a snapshot of every scope; both carry the stream's sequence
number, the `id` of the SSE frame a client resumes from with Last-Event-ID. No personal data.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AGGREGATES_FRAME = "eldercare.reporting.aggregates.frame.v1"


class AggregatesFrame(BaseModel):
    """A live-stream frame of the aggregates: a delta after each committed fold, or a snapshot."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["delta", "snapshot"]
    seq: int = Field(ge=0)
    # delta: rows {county, dim, bucket, value}, {county, facility_id, facility_type, name, beds,
    # nursing_beds, occupied}, {county, trainees, sessions}
    counts: list[dict[str, Any]] = Field(default_factory=list)
    facilities: list[dict[str, Any]] = Field(default_factory=list)
    training: list[dict[str, Any]] = Field(default_factory=list)
    # delta: {county, orders, alerts}, the whole order and alert sections of each scope the fold touched
    services: list[dict[str, Any]] = Field(default_factory=list)
    # snapshot: {scope: aggregates view} of every county and the city
    scopes: dict[str, dict[str, Any]] | None = None


REPORTING_EVENTS: dict[str, type[BaseModel]] = {AGGREGATES_FRAME: AggregatesFrame}
