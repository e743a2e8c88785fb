"""Detection: what a device signal means under the rules in force. Pure functions; the handlers
read the projection and the vitals state, call these and write what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from services.alerts.domain.rules import VITALS, Rules, VitalRange

SOS = "eldercare.county.device.sos.v1"
FALL = "eldercare.county.device.fall.v1"
VITALS_TYPE = "eldercare.county.device.vitals.v1"
ACTIVITY = "eldercare.county.device.activity.v1"
ALARM = "eldercare.county.device.alarm.v1"
LOCATION = "eldercare.county.device.location.v1"
VISIT = "eldercare.county.visit.logged.v1"
DEVICE_TYPES = frozenset({SOS, FALL, VITALS_TYPE, ACTIVITY, ALARM, LOCATION})

# An SOS and a fall close together are one emergency seen twice (the wearer pressed the button
# after falling, or the fall detector fired after the press): one incident.
INCIDENT_CAUSES = frozenset({"sos", "fall"})
# Causes of the data-quality kind: the signal could not be tied to what the platform knows.
UNKNOWN_RESIDENT = "unknown_resident"
UNKNOWN_CODE = "unknown_device_code"
DEVICE_REASSIGNED = "device_reassigned"

VitalState = Literal["normal", "low", "high"]
Step = Literal["raise", "repeat", "hold", "clear", "normal"]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something to raise (or join an open alert with), or to note on an open alert (`cancel`)."""

    cause: str
    severity: Literal["critical", "warning"]
    details: dict = field(default_factory=dict)
    action: Literal["raise", "cancel"] = "raise"


def _located(data: dict) -> dict:
    return {k: data[k] for k in ("device_id", "lat", "lon", "confidence") if data.get(k) is not None}


def device_findings(event_type: str, data: dict, rules: Rules) -> list[Finding]:
    """SOS and fall are critical at once; a wearable code maps to its cause and severity; an
    unknown code is a data-quality warning rather than silence."""
    if event_type == SOS:
        return [Finding("sos", "critical", _located(data))]
    if event_type == FALL:
        return [Finding("fall", "critical", _located(data))]
    if event_type == ALARM:
        code = str(data.get("code", ""))
        rule = rules.codes.get(code)
        if rule is None:
            return [Finding(UNKNOWN_CODE, "warning", {"device_id": data.get("device_id"), "code": code})]
        return [Finding(rule.cause, rule.severity, {**_located(data), "code": code}, rule.action)]
    return []


def vital_step(rng: VitalRange, state: VitalState, value: float) -> tuple[VitalState, Step]:
    """One reading against one range. Entering low/high raises; staying beyond the limit repeats
    (joins the open alert); inside the hysteresis band holds the state; only a reading inside the
    range by more than the band clears."""
    low_breach = rng.low is not None and value < rng.low
    high_breach = rng.high is not None and value > rng.high
    if state == "high":
        if high_breach:
            return "high", "repeat"
        if rng.high is not None and value > rng.high - rng.hysteresis:
            return "high", "hold"
        state = "normal"
        if not low_breach:
            return "normal", "clear"
    if state == "low":
        if low_breach:
            return "low", "repeat"
        if rng.low is not None and value < rng.low + rng.hysteresis:
            return "low", "hold"
        state = "normal"
        if not high_breach:
            return "normal", "clear"
    if high_breach:
        return "high", "raise"
    if low_breach:
        return "low", "raise"
    return "normal", "normal"


def vitals_findings(data: dict, rules: Rules, states: dict[str, VitalState]
                    ) -> tuple[list[Finding], dict[str, VitalState]]:
    """Findings for one vitals reading and the new state of each vital sign it measured."""
    findings: list[Finding] = []
    new_states: dict[str, VitalState] = {}
    for metric in VITALS:
        value = data.get(metric)
        rng = rules.vitals.get(metric)
        if value is None or rng is None:
            continue
        state, step = vital_step(rng, states.get(metric, "normal"), float(value))
        if state != states.get(metric, "normal"):
            new_states[metric] = state
        if step in ("raise", "repeat"):
            limit = rng.high if state == "high" else rng.low
            findings.append(Finding(f"{metric}_{state}", rng.severity,
                                    {"device_id": data.get("device_id"), metric: value, "limit": limit}))
    return findings, new_states


def time_problem(at: datetime, now: datetime, rules: Rules) -> str | None:
    """Why a reading's timestamp cannot be trusted, or None."""
    if at - now > timedelta(seconds=rules.max_clock_skew_s):
        return f"time: {at.isoformat()} is more than {rules.max_clock_skew_s:.0f} s in the future"
    if now - at > timedelta(seconds=rules.max_event_age_s):
        return f"time: {at.isoformat()} is more than {rules.max_event_age_s:.0f} s old"
    return None


def same_incident(cause: str, other_cause: str, other_first_seen: datetime, at: datetime,
                  window_s: float) -> bool:
    """An SOS and a fall (either order) within the window are one incident."""
    return (cause in INCIDENT_CAUSES and other_cause in INCIDENT_CAUSES and cause != other_cause
            and abs((at - other_first_seen).total_seconds()) <= window_s)


def escalation_due(severity: str, raised_at: datetime, rules: Rules) -> datetime | None:
    """When an unacknowledged alert moves from the county to the city (critical ones only)."""
    if severity != "critical":
        return None
    return raised_at + timedelta(seconds=rules.escalate_after_s)


@dataclass(frozen=True, slots=True)
class Silence:
    county_code: str
    expires_at: datetime
    starts_at: datetime
    cause: str | None = None
    resident_id: str | None = None
    device_id: str | None = None
    id: object = None


def silenced_by(silences: list[Silence], county: str, resident_id: str | None, device_id: str | None,
                cause: str, at: datetime) -> Silence | None:
    """The first silence covering this signal: same county, and every field it names matches."""
    for s in silences:
        if s.county_code != county or not (s.starts_at <= at < s.expires_at):
            continue
        if s.cause is not None and s.cause != cause:
            continue
        if s.resident_id is not None and s.resident_id != resident_id:
            continue
        if s.device_id is not None and s.device_id != device_id:
            continue
        return s
    return None
