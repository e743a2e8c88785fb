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


FIGURES = ("facility_type", "beds", "nursing_beds", "occupied")


def compare_facilities(registry: list[dict], ours: list[dict]) -> tuple[list[dict], int]:
    """Facility by facility ({county_code, facility_id, reported_at, *FIGURES}): the differences,
    and how many facilities have a newer report on its way (the registry's is later than
    reporting's, or reporting has none yet; reporting's figures are read first, so it is never
    ahead — a report of its own that is newer or unknown to the registry is a difference)."""
    theirs = {(f["county_code"], f["facility_id"]): f for f in registry}
    mine = {(f["county_code"], f["facility_id"]): f for f in ours}
    out, in_flight = [], 0
    for key in sorted(set(theirs) | set(mine)):
        a, b = theirs.get(key), mine.get(key)
        if a is not None and (b is None or a["reported_at"] > b["reported_at"]):
            in_flight += 1
            continue
        if a is None or b is None or a["reported_at"] != b["reported_at"] or any(a[k] != b[k] for k in FIGURES):
            out.append({"scope": key[0], "dimension": "facility", "bucket": key[1],
                        "registry": None if a is None else {k: a[k] for k in FIGURES},
                        "reporting": None if b is None else {k: b[k] for k in FIGURES}})
    return out, in_flight


def compare_training(registry: list[dict], ours: list[dict], totals: dict[str, dict[str, int]]) -> tuple[list[dict], int]:
    """Training records by event id ({county_code, event_id, trainees}) and reporting's totals per
    county ({county: {trainees, sessions}}): a record the registry has and reporting not yet is on
    its way; one only reporting has, or with other figures, is a difference; and each county's
    totals must be the registry's sum over the records reporting has folded."""
    theirs = {r["event_id"]: r for r in registry}
    mine = {r["event_id"]: r for r in ours}
    out, in_flight = [], 0
    for event_id in sorted(set(theirs) | set(mine)):
        a, b = theirs.get(event_id), mine.get(event_id)
        if b is None:
            in_flight += 1
        elif a is None or (a["county_code"], a["trainees"]) != (b["county_code"], b["trainees"]):
            out.append({"scope": (b or a)["county_code"], "dimension": "training_record", "bucket": event_id,
                        "registry": None if a is None else a["trainees"], "reporting": b["trainees"]})
    # The registry's totals of what reporting has folded (the records on their way left out).
    folded: dict[str, dict[str, int]] = {}
    for r in (theirs[e] for e in theirs if e in mine):
        slot = folded.setdefault(r["county_code"], {"trainees": 0, "sessions": 0})
        slot["trainees"] += r["trainees"]
        slot["sessions"] += 1
    for county in sorted(set(folded) | set(totals)):
        for figure in ("trainees", "sessions"):
            a = folded.get(county, {}).get(figure, 0)
            b = totals.get(county, {}).get(figure, 0)
            if a != b:
                out.append({"scope": county, "dimension": "training", "bucket": figure, "registry": a, "reporting": b})
    return out, in_flight
