"""Folding resident events into counters (pure). A resident's state is what reporting needs of a
snapshot; an event turns an old state into a new one, and the difference moves the resident from
the old buckets to the new ones (shared/buckets.py: the rules the registry recounts by). Every
counter exists per county and for the city ("city")."""

from __future__ import annotations

from collections import Counter
from datetime import date
from types import SimpleNamespace
from typing import NamedTuple

from shared.buckets import resident_buckets as buckets

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
    # Where the resident lives (the township and village figures are counted from these) and the
    # family-doctor contract; last, so the columns above keep their places.
    township: str
    village: str
    family_doctor_contract: bool


def state_from_snapshot(s: dict | object) -> ResidentState:
    if isinstance(s, dict):
        s = SimpleNamespace(**{"family_doctor_contract": False, **s})
    # Attribute access, not a getter per field: this runs once per folded event.
    birth = s.birth_date
    return ResidentState(
        resident_id=str(s.resident_id), county_code=s.county_code,
        birth_date=birth if isinstance(birth, date) else date.fromisoformat(birth), gender=s.gender,
        living_arrangement=s.living_arrangement, categories=tuple(sorted(s.categories or ())),
        ability_level=s.ability_level, status=s.status, family_bed=bool(s.family_bed), version=int(s.version),
        township=s.township, village=s.village, family_doctor_contract=bool(s.family_doctor_contract),
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
