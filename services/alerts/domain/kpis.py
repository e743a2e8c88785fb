"""Response KPIs the alarm-centre codes of practice measure (UK TSA: 97.5 % of alarms answered
within 60 s and 99 % within 180 s): shares within the targets, median and p90."""

from __future__ import annotations

import math
from dataclasses import dataclass


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass(slots=True)
class AlertTimes:
    severity: str
    seconds_to_ack: float | None
    seconds_to_resolve: float | None
    escalated: bool


def summarise(rows: list[AlertTimes]) -> dict:
    """KPIs of a set of alerts. Shares are of all alerts raised, so an alert nobody acknowledged
    counts against the target rather than disappearing from it."""
    acks = [r.seconds_to_ack for r in rows if r.seconds_to_ack is not None]
    resolves = [r.seconds_to_resolve for r in rows if r.seconds_to_resolve is not None]
    n = len(rows)

    def share(limit: float) -> float | None:
        return round(sum(1 for a in acks if a <= limit) / n, 4) if n else None

    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "alerts": n,
        "critical": sum(1 for r in rows if r.severity == "critical"),
        "acknowledged": len(acks),
        "acked_within_60s": share(60),
        "acked_within_180s": share(180),
        "ack_seconds_median": rounded(percentile(acks, 0.5)),
        "ack_seconds_p90": rounded(percentile(acks, 0.9)),
        "resolve_seconds_median": rounded(percentile(resolves, 0.5)),
        "resolve_seconds_p90": rounded(percentile(resolves, 0.9)),
        "escalations": sum(1 for r in rows if r.escalated),
    }
