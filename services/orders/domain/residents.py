"""What orders knows of a resident (its projection of the registry's snapshots) and how an event
changes it. Snapshots carry a version: one the projection already holds, or an older one arriving
late, changes nothing — so applying one twice is harmless and needs no inbox row."""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

SNAPSHOT_TYPES = frozenset({
    "eldercare.resident.registered.v1", "eldercare.resident.updated.v1", "eldercare.resident.transferred.v1",
    # Periodic whole snapshots the registry publishes so a consumer can rebuild from a compacted log.
    "eldercare.resident.snapshot.v1",
})
ASSESSED = "eldercare.resident.assessed.v1"
DECEASED = "eldercare.resident.deceased.v1"
RESIDENT_TYPES = SNAPSHOT_TYPES | {ASSESSED, DECEASED}


class ResidentFacts(NamedTuple):
    resident_id: str
    county_code: str
    name: str
    birth_date: date
    township: str
    village: str
    living_arrangement: str
    categories: tuple[str, ...]
    ability_level: int | None
    status: str
    family_bed: bool
    home_lat: float | None
    home_lon: float | None
    date_of_death: date | None
    version: int

    def age_on(self, day: date) -> int:
        years = day.year - self.birth_date.year
        return years - ((day.month, day.day) < (self.birth_date.month, self.birth_date.day))


def facts_from_snapshot(s, date_of_death: date | None = None) -> ResidentFacts:
    return ResidentFacts(
        resident_id=str(s.resident_id), county_code=s.county_code, name=s.name, birth_date=s.birth_date,
        township=s.township, village=s.village, living_arrangement=s.living_arrangement,
        categories=tuple(sorted(s.categories or ())), ability_level=s.ability_level, status=s.status,
        family_bed=bool(s.family_bed), home_lat=getattr(s, "home_lat", None), home_lon=getattr(s, "home_lon", None),
        date_of_death=date_of_death, version=int(s.version),
    )


def apply_resident_event(current: ResidentFacts | None, event_type: str, data) -> ResidentFacts | None:
    """The facts after an event, or None when it changes nothing (stale snapshot, unknown resident)."""
    if event_type in SNAPSHOT_TYPES:
        new = facts_from_snapshot(data.resident, current.date_of_death if current else None)
        if current is not None and new.version <= current.version:
            return None  # an older snapshot arriving late must not undo a newer one
        if current is not None and new.home_lat is None and current.home_lat is not None:
            # A producer that does not know the home location yet must not erase one we hold.
            new = new._replace(home_lat=current.home_lat, home_lon=current.home_lon)
        return new
    if current is None:
        return None
    if event_type == ASSESSED:
        return current._replace(ability_level=data.level) if current.ability_level != data.level else None
    if event_type == DECEASED:
        if current.status == "deceased" and current.date_of_death == data.date_of_death:
            return None
        return current._replace(status="deceased", date_of_death=data.date_of_death)
    return None
