"""Comparing reporting's counters with the registry's recount at one cut (pure).

Reporting reads its figures first (one snapshot), then asks the registry for its counts and the
residents it changed in the last `window` seconds, from one snapshot of its own (later than
reporting's). A resident whose change reporting has not folded yet was changed after reporting's
snapshot minus the fold's delay, so it is in the registry's recent list as long as the window is
longer than the fold's delay plus the registry's answer time. Taking both sides' contributions of
the recent residents out leaves the residents both sides have settled: there, any difference is
real, whatever the live load. (The recent residents are checked by the next comparison once they
are older than the window.)
"""

from __future__ import annotations

from collections.abc import Iterable

CITY = "city"

Counts = dict[str, dict[str, dict[str, int]]]  # {scope: {dimension: {bucket: n}}}


def without(counts: Counts, residents: Iterable[tuple[str, Iterable[tuple[str, str]]]]) -> Counts:
    """`counts` with each (county, buckets) resident taken out of its county and the city."""
    out = {scope: {dim: dict(b) for dim, b in dims.items()} for scope, dims in counts.items()}
    for county, buckets in residents:
        for dim, bucket in buckets:
            for scope in (county, CITY):
                slot = out.setdefault(scope, {}).setdefault(dim, {})
                slot[bucket] = slot.get(bucket, 0) - 1
    return out


def compare_counts(registry: Counts, ours: Counts) -> list[dict]:
    """Every (scope, dimension, bucket) whose count differs."""
    out = []
    for scope in sorted(set(registry) | set(ours) | {CITY}):
        theirs = registry.get(scope, {})
        mine = ours.get(scope, {})
        for dim in sorted(set(theirs) | set(mine)):
            for bucket in sorted(set(theirs.get(dim, {})) | set(mine.get(dim, {}))):
                a, b = theirs.get(dim, {}).get(bucket, 0), mine.get(dim, {}).get(bucket, 0)
                if a != b:
                    out.append({"scope": scope, "dimension": dim, "bucket": bucket, "registry": a, "reporting": b})
    return out


def compare_at_cut(registry: Counts, ours: Counts, recent_registry: list[tuple[str, list[tuple[str, str]]]],
                   recent_ours: list[tuple[str, list[tuple[str, str]]]]) -> list[dict]:
    """The differences once the recent residents are out of both sides: `recent_registry` are the
    registry's (county, buckets) of the residents it changed within the window, `recent_ours`
    reporting's own state of those same residents (those it has)."""
    return compare_counts(without(registry, recent_registry), without(ours, recent_ours))
