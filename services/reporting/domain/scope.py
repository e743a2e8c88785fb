"""What a reader of reporting may see (SPEC roles): `city` and `viewer` every county; a `county`
caller its own county and the city's totals, never another county's rows — in the aggregates, the
task list, the exports and every frame of the live streams alike.

`county` below is the reader's county scope: None for a reader who sees everything."""

from __future__ import annotations

from services.reporting.domain.folding import CITY

# The row lists of a live-stream delta, each row naming its county (or "city" for a city total).
DELTA_ROWS = ("counts", "facilities", "training", "services")


def may_see(county: str | None, scope: str) -> bool:
    """Whether a reader scoped to `county` may see the figures of `scope` (a county code or "city")."""
    return county is None or scope == CITY or scope == county


def scoped_snapshot(snapshot: dict, county: str | None) -> dict:
    """An aggregates snapshot ({"seq", "scopes": {scope: view}}) with only the visible scopes."""
    if county is None:
        return snapshot
    return {**snapshot, "scopes": {s: v for s, v in snapshot["scopes"].items() if may_see(county, s)}}


def scoped_rows(rows: list[dict], county: str | None) -> list[dict]:
    """Task-list rows (each with `county_code`) the reader may see. The city row is computed over
    every county before this (targets are apportioned city-wide), so it is the same for everyone."""
    if county is None:
        return rows
    return [r for r in rows if may_see(county, r["county_code"])]


def scoped_delta(delta: dict, county: str | None) -> dict | None:
    """A delta with only the rows the reader may see; None when none is left (the frame is not sent:
    a change that is another county's alone, e.g. its facility reports, shows nothing to the reader)."""
    if county is None:
        return delta
    kept = {key: [r for r in delta[key] if may_see(county, r["county"])] for key in DELTA_ROWS if key in delta}
    if not any(kept.values()):
        return None
    return {**delta, **kept}
