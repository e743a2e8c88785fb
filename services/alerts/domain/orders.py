"""What the order stream says about care that did not happen as booked: not accepted in time, a
caregiver late (15/30/60 min) or absent, checked in or out away from the resident's home (the orders
service's EVV geofence), a visit far shorter than booked, one caregiver in two places at once. Pure: the handlers keep each order's projection and call these."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.alerts.domain.detection import Finding
from services.alerts.domain.rules import Rules

OPEN_STATES = frozenset({"placed", "accepted", "assigned"})
ENDED_STATES = frozenset({"completed", "rated", "cancelled", "rejected", "expired", "no_show"})


def next_late_check(scheduled_start: datetime, level: int, rules: Rules) -> datetime | None:
    """When the next lateness step falls due, after `level` minutes were already flagged (0: none)."""
    for minutes in rules.late_minutes:
        if minutes > level:
            return scheduled_start + timedelta(minutes=minutes)
    return None


def late_level(scheduled_start: datetime, now: datetime, rules: Rules) -> int:
    """The largest lateness step passed by now (0 before the first)."""
    passed = [m for m in rules.late_minutes if scheduled_start + timedelta(minutes=m) <= now]
    return passed[-1] if passed else 0


# The orders service's EVV exceptions (services/orders/domain/evv.py) that are alerts here.
GEOFENCE_EXCEPTIONS = {"checked_in": ("check_in_outside_geofence", "checkin_outside_geofence"),
                       "completed": ("check_out_outside_geofence", "checkout_outside_geofence")}


def transition_findings(state: str, data: dict) -> list[Finding]:
    fence = GEOFENCE_EXCEPTIONS.get(state)
    if fence is not None and fence[0] in (data.get("evv_exceptions") or ()):
        return [Finding(fence[1], "warning", {k: data.get(k) for k in (
            "order_id", "caregiver_id", "distance_m", "accuracy_m", "lat", "lon") if data.get(k) is not None})]
    if state == "expired":
        return [Finding("order_not_accepted", "warning", {"order_id": data["order_id"]})]
    if state == "no_show":
        return [Finding("caregiver_no_show", "warning", {"order_id": data["order_id"],
                                                          "caregiver_id": data.get("caregiver_id")})]
    return []


def short_visit(checked_in_at: datetime | None, completed_at: datetime, booked_minutes: int,
                rules: Rules) -> Finding | None:
    if checked_in_at is None:
        return None
    minutes = (completed_at - checked_in_at).total_seconds() / 60
    if minutes < booked_minutes * rules.short_visit_ratio:
        return Finding("visit_short", "warning", {"minutes": round(minutes, 1), "booked_minutes": booked_minutes})
    return None
