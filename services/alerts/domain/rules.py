"""Detection rules as data: one city document, per-county overrides merged onto it, each saved as a
new version. An alert names the version that raised it ("city:3" or "city:3+410928:2")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events.residents import Category

Severity = Literal["critical", "warning"]
VITALS = ("heart_rate", "spo2", "systolic", "diastolic", "temperature")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VitalRange(_Doc):
    """A normal range; a reading outside it raises, and only a reading back inside by more than
    `hysteresis` clears (so a value hovering at an edge does not flap)."""

    low: float | None = None
    high: float | None = None
    hysteresis: float = Field(0, ge=0)
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _ordered(self) -> "VitalRange":
        if self.low is not None and self.high is not None and self.low + 2 * self.hysteresis >= self.high:
            raise ValueError("low + 2 × hysteresis must stay below high")
        return self


class CodeRule(_Doc):
    """What a wearable's code means: a cause and severity to raise, or `cancel` (the wearer
    cancelled an SOS: recorded on the open SOS alert, which an operator still closes)."""

    cause: str = Field(min_length=1, max_length=50, pattern=r"^[a-z_]+$")
    severity: Severity = "warning"
    action: Literal["raise", "cancel"] = "raise"


class VisitRule(_Doc):
    """Days between visits by group (regional practice: high risk weekly, key groups monthly,
    others quarterly)."""

    high_risk_days: float = Field(7, gt=0)
    key_group_days: float = Field(30, gt=0)
    others_days: float = Field(90, gt=0)
    # Quarterly visits to everyone else are owed but not alarmed by default: 700k warnings a
    # quarter would bury the alarms that matter. A county may turn them on.
    warn_others: bool = False


class GeofenceRule(_Doc):
    """Safe zones. A resident in one of `home_zone_categories` whose home location the registry
    sends gets a circle of `radius_m` around it; a zone set through the API (any resident) wins.
    Leaving counts only when a fix is outside the radius by more than `hysteresis_m` plus its own
    accuracy for `exit_fixes` fixes in a row; coming back only when one is inside by more than
    `hysteresis_m` for `return_fixes` in a row: GPS jitter at the edge changes nothing. Fixes less
    accurate than `max_accuracy_m` are ignored."""

    enabled: bool = True
    home_zone_categories: list[Category] = Field(default_factory=lambda: ["dementia"], max_length=7)
    radius_m: float = Field(300, gt=0, le=50_000)
    hysteresis_m: float = Field(50, ge=0, le=5_000)
    exit_fixes: int = Field(2, ge=1, le=20)
    return_fixes: int = Field(2, ge=1, le=20)
    max_accuracy_m: float = Field(250, gt=0, le=10_000)
    # A dementia elder out of their zone is an emergency (wandering, 走失): critical by default, so
    # it escalates and the emergency contacts are called.
    severity: Severity = "critical"


class ContactRule(_Doc):
    """Emergency contacts on the escalation path: called when an alert of these severities escalates
    (not acknowledged in time), and whenever an operator dispatches `emergency_contact`."""

    on_escalation: bool = True
    severities: list[Severity] = Field(default_factory=lambda: ["critical"], min_length=0, max_length=2)


class Rules(_Doc):
    escalate_after_s: float = Field(60, gt=0, le=3600)
    incident_window_s: float = Field(300, ge=0, le=3600)
    no_activity_hours: float = Field(12, gt=0, le=24 * 14)
    # Readings older than this or further ahead than the skew are refused with the reason.
    max_event_age_s: float = Field(24 * 3600, gt=0)
    max_clock_skew_s: float = Field(300, ge=0)
    vitals: dict[str, VitalRange] = Field(default_factory=lambda: {
        "heart_rate": VitalRange(low=45, high=130, hysteresis=5),
        "spo2": VitalRange(low=90, hysteresis=2),
        "systolic": VitalRange(low=85, high=180, hysteresis=5),
        "diastolic": VitalRange(low=45, high=110, hysteresis=5),
        "temperature": VitalRange(low=35.0, high=38.0, hysteresis=0.3),
    })
    codes: dict[str, CodeRule] = Field(default_factory=lambda: {
        "SOS": CodeRule(cause="sos", severity="critical"),
        "FALL": CodeRule(cause="fall", severity="critical"),
        "OFF_WRIST": CodeRule(cause="device_off_wrist"),
        "LOW_BATTERY": CodeRule(cause="device_low_battery"),
        "TAMPER": CodeRule(cause="device_tamper"),
        "SOS_CANCEL": CodeRule(cause="sos", action="cancel"),
        "IRREGULAR_RHYTHM": CodeRule(cause="irregular_heart_rhythm"),
    })
    visits: VisitRule = Field(default_factory=VisitRule)
    # Orders: a caregiver not checked in this many minutes after the scheduled start is late (one
    # alert, its count rising at each step); a visit shorter than this share of the booked time
    # is flagged.
    late_minutes: list[int] = Field(default_factory=lambda: [15, 30, 60], min_length=1, max_length=6)
    short_visit_ratio: float = Field(0.5, gt=0, le=1)
    geofence: GeofenceRule = Field(default_factory=GeofenceRule)
    contacts: ContactRule = Field(default_factory=ContactRule)

    @model_validator(mode="after")
    def _known_vitals(self) -> "Rules":
        if self.late_minutes != sorted(set(self.late_minutes)) or self.late_minutes[0] <= 0:
            raise ValueError("late_minutes must be increasing positive minutes")
        unknown = set(self.vitals) - set(VITALS)
        if unknown:
            raise ValueError(f"unknown vital sign {sorted(unknown)[0]!r} (known: {', '.join(VITALS)})")
        return self


def merge(base: dict, override: dict) -> dict:
    """A county override laid over the city document: nested objects merge key by key, anything
    else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def effective(city: dict, city_version: int, county: dict | None, county_code: str | None,
              county_version: int | None) -> tuple[Rules, str]:
    """The rules in force for a county, and the version label an alert records."""
    if county is None or county_version is None:
        return Rules.model_validate(city), f"city:{city_version}"
    return Rules.model_validate(merge(city, county)), f"city:{city_version}+{county_code}:{county_version}"
