"""Folding resident events into counters (pure). A resident's state is what reporting needs of a
snapshot; an event turns an old state into a new one, and the difference moves the resident from
the old buckets to the new ones. Every counter exists per county and for the city ("city")."""

from __future__ import annotations

from collections import Counter
from datetime import date
from types import SimpleNamespace
from typing import NamedTuple

CITY = "city"
# Events carrying the resident's whole state with its version (a re-publish job's snapshot too).
SNAPSHOT_TYPES = frozenset({"eldercare.resident.registered.v1", "eldercare.resident.updated.v1",
                            "eldercare.resident.transferred.v1", "eldercare.resident.snapshot.v1"})


class ResidentState(NamedTuple):
    """Immutable; a tuple because one is built per folded event (a frozen dataclass's __init__
    costs several times as much)."""

    resident_id: str
    county_code: str
    birth_date: date
    gender: str
    living_arrangement: str
    categories: tuple[str, ...]
    ability_level: int | None
    status: str
    family_bed: bool
    version: int


def state_from_snapshot(s: dict | object) -> ResidentState:
    if isinstance(s, dict):
        s = SimpleNamespace(**s)
    # Attribute access, not a getter per field: this runs once per folded event.
    birth = s.birth_date
    return ResidentState(
        resident_id=str(s.resident_id), county_code=s.county_code,
        birth_date=birth if isinstance(birth, date) else date.fromisoformat(birth), gender=s.gender,
        living_arrangement=s.living_arrangement, categories=tuple(sorted(s.categories or ())),
        ability_level=s.ability_level, status=s.status, family_bed=bool(s.family_bed), version=int(s.version),
    )


def apply_event(current: ResidentState | None, event_type: str, data) -> ResidentState | None:
    """The state after an event (None: the event changes nothing we count)."""
    if event_type in SNAPSHOT_TYPES:
        new = state_from_snapshot(data.resident)
        if current is not None and new.version <= current.version:
            return None  # an older snapshot arriving late must not undo a newer one
        return new
    if current is None:
        return None
    if event_type == "eldercare.resident.assessed.v1":
        return current._replace(ability_level=data.level) if current.ability_level != data.level else None
    if event_type == "eldercare.resident.deceased.v1":
        return current._replace(status="deceased") if current.status != "deceased" else None
    return None


def buckets(state: ResidentState) -> list[tuple[str, str]]:
    """(dimension, bucket) pairs a resident counts in. Profile dimensions count active residents;
    `birth_month` lets age bands be computed exactly (to the month) on the day they are read."""
    out = [("status", state.status)]
    if state.status != "active":
        return out
    out += [
        ("birth_month", f"{state.birth_date.year:04d}-{state.birth_date.month:02d}"),
        ("gender", state.gender),
        ("living_arrangement", state.living_arrangement),
        ("ability_level", str(state.ability_level) if state.ability_level is not None else "unassessed"),
    ]
    out += [("category", c) for c in state.categories]
    if state.family_bed:
        out.append(("family_bed", "yes"))
    return out


def accumulate(changes: dict, old: ResidentState | None, new: ResidentState | None) -> None:
    """Add the move from old to new to `changes` {(county, dimension, bucket): ±n}, counties only:
    `with_city` adds the city once per key instead of once per event. (In place: a batch of
    thousands of events folds into one dict.)"""
    get = changes.get
    if old is not None:
        county = old.county_code
        for dim, bucket in buckets(old):
            key = (county, dim, bucket)
            changes[key] = get(key, 0) - 1
    if new is not None:
        county = new.county_code
        for dim, bucket in buckets(new):
            key = (county, dim, bucket)
            changes[key] = get(key, 0) + 1


def with_city(changes: dict) -> dict:
    """County changes and the city's (their sum), zeros dropped."""
    out: dict = {}
    for key, n in changes.items():
        if n:
            out[key] = n
            city = (CITY, key[1], key[2])
            out[city] = out.get(city, 0) + n
    return {k: v for k, v in out.items() if v}


def delta(old: ResidentState | None, new: ResidentState | None) -> Counter:
    """Counter changes {(county, dimension, bucket): ±n} for county and city (zeros dropped)."""
    changes: dict = {}
    accumulate(changes, old, new)
    return Counter(with_city(changes))


AGE_BANDS = [(60 + 5 * i, 64 + 5 * i) for i in range(8)] + [(100, 200)]


def band_label(low: int, high: int) -> str:
    return f"{low}+" if high >= 200 else f"{low}-{high}"


def age_bands(birth_months: dict[str, int], today: date) -> dict[str, int]:
    """Residents per age band (60-64 … 95-99, 100+) from counts per birth month. Someone born in
    the current calendar month is counted as having had the birthday (exact to the month)."""
    bands = {band_label(lo, hi): 0 for lo, hi in AGE_BANDS}
    under = 0
    for month, n in birth_months.items():
        year, mon = int(month[:4]), int(month[5:7])
        age = today.year - year - (1 if mon > today.month else 0)
        for lo, hi in AGE_BANDS:
            if lo <= age <= hi:
                bands[band_label(lo, hi)] += n
                break
        else:
            under += n
    bands["under_60"] = under
    return bands


def elderly_count(birth_months: dict[str, int], today: date) -> int:
    """Active residents aged 60 and over."""
    bands = age_bands(birth_months, today)
    return sum(v for k, v in bands.items() if k != "under_60")
