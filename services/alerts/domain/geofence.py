"""Geofences: whether a position fix means a resident left their safe zone or came back. Pure
functions; the handlers read the zone and the state, call these and write what they return.

A zone is a circle (centre, radius). GPS fixes jitter by tens of metres and carry an accuracy
radius, so the state moves only on evidence: leaving needs `exit_fixes` fixes in a row that are
outside even if the true position were `accuracy_m` closer, and by more than the hysteresis band;
coming back needs `return_fixes` fixes in a row inside the radius by more than the band. Anything
between holds the state (and breaks a streak). A fix too vague to tell is ignored."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from services.alerts.domain.rules import GeofenceRule

State = Literal["inside", "outside"]
Action = Literal["raise", "clear", "hold", "ignored"]
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
CAUSE = "geofence_exit"


@dataclass(frozen=True, slots=True)
class Zone:
    lat: float
    lon: float
    radius_m: float
    source: Literal["home", "configured"]
    device_id: str | None = None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def zone_for(configured: Zone | None, home_lat: float | None, home_lon: float | None,
             categories: tuple[str, ...] | list[str], rules: GeofenceRule) -> Zone | None:
    """The zone a resident's fixes are checked against: the one configured for them, else a circle
    around their home if they are in a group the rules watch (dementia by default), else none."""
    if not rules.enabled:
        return None
    if configured is not None:
        return configured
    if home_lat is None or home_lon is None or not set(rules.home_zone_categories).intersection(categories):
        return None
    return Zone(home_lat, home_lon, rules.radius_m, "home")


@dataclass(frozen=True, slots=True)
class Step:
    state: State
    streak: int
    action: Action
    distance_m: float


def step(zone: Zone, state: State, streak: int, lat: float, lon: float, accuracy_m: float | None,
         rules: GeofenceRule) -> Step:
    """One fix against the zone, from the resident's current state and streak (fixes in a row that
    pointed the other way)."""
    d = distance_m(zone.lat, zone.lon, lat, lon)
    accuracy = accuracy_m or 0.0
    if accuracy > rules.max_accuracy_m:
        return Step(state, streak, "ignored", d)
    # The band never swallows a small zone: at most half its radius.
    band = min(rules.hysteresis_m, zone.radius_m / 2)
    if state == "inside":
        if d - accuracy > zone.radius_m + band:
            streak += 1
            if streak >= rules.exit_fixes:
                return Step("outside", 0, "raise", d)
            return Step("inside", streak, "hold", d)
        return Step("inside", 0, "hold", d)
    if d < zone.radius_m - band:
        streak += 1
        if streak >= rules.return_fixes:
            return Step("inside", 0, "clear", d)
        return Step("outside", streak, "hold", d)
    return Step("outside", 0, "hold", d)
