"""Electronic visit verification (21st Century Cures Act §12006): the six facts — service,
resident, caregiver, date, location, start and end — and the checks that make a visit an
exception needing a reason and a county's confirmation before it is paid."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine): well under a metre off at the scale of a geofence."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class GeofenceVerdict:
    distance_m: float | None
    radius_m: float
    inside: bool | None   # None: the resident's home location is not known


def geofence(home: tuple[float, float] | None, lat: float, lon: float, accuracy_m: float,
             radius_m: float = 150.0) -> GeofenceVerdict:
    """Inside when the reported point is within the radius widened by the reported accuracy (US
    state practice: 100-150 m plus the GPS accuracy)."""
    allowed = radius_m + accuracy_m
    if home is None:
        return GeofenceVerdict(None, allowed, None)
    d = distance_m(home[0], home[1], lat, lon)
    return GeofenceVerdict(d, allowed, d <= allowed)


def is_short(actual_minutes: float, booked_minutes: int, min_share: float = 0.5) -> bool:
    """A visit much shorter than booked: under `min_share` of the booked time."""
    return actual_minutes < booked_minutes * min_share


def overlaps(start: datetime, end: datetime | None, other_start: datetime, other_end: datetime | None) -> bool:
    """Two visits of one caregiver overlapping in time (an open visit has no end yet)."""
    return (other_end is None or start < other_end) and (end is None or other_start < end)


def exceptions_at_check_in(fence: GeofenceVerdict, overlapping: bool) -> list[str]:
    out = []
    if fence.inside is None:
        out.append("home_location_unknown")
    elif not fence.inside:
        out.append("check_in_outside_geofence")
    if overlapping:
        out.append("caregiver_in_two_places")
    return out


def exceptions_at_check_out(fence: GeofenceVerdict, actual_minutes: float, booked_minutes: int,
                            min_share: float) -> list[str]:
    out = []
    if fence.inside is False:
        out.append("check_out_outside_geofence")
    if is_short(actual_minutes, booked_minutes, min_share):
        out.append("short_visit")
    return out
