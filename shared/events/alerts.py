"""Events of the alerts service's alert stream (topic eldercare.alerts.alerts.v1).

Every step of an alert's timeline is one event, timestamped to the second (`at`); the record key
is the alert id, so one alert's steps stay in order."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DispatchTarget = Literal["emergency_contact", "caregiver", "doctor", "ambulance_120", "police_110", "community"]
Resolution = Literal["false_alarm", "helped_at_home", "taken_to_hospital", "resolved_by_family",
                     "device_fixed", "visited", "returned_to_zone", "no_action_needed", "deceased", "other"]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_id: str
    resident_id: str | None = None
    county_code: str
    at: datetime


class AlertRaised(_Data):
    """Emitted when a new alert opens (a repeated signal updates `count` via AlertUpdated instead)."""

    severity: Literal["critical", "warning"]
    cause: str
    details: dict = Field(default_factory=dict)
    # Added fields (optional, so older consumers and examples stay valid):
    rule_version: str | None = None
    incident_id: str | None = None
    silenced: bool = False
    escalate_at: datetime | None = None


class AlertUpdated(_Data):
    """Emitted when a repeated signal joins an open alert (or the wearer cancelled an SOS: `note`)."""

    count: int = Field(ge=1)
    note: str | None = None


class AlertAcknowledged(_Data):
    """Emitted when an operator acknowledges an alert."""

    operator: str
    seconds_to_acknowledge: float = Field(ge=0)


class AlertDispatched(_Data):
    """Emitted when an operator records who was sent or called."""

    operator: str
    targets: list[DispatchTarget] = Field(min_length=1)
    note: str | None = None


class AlertEscalated(_Data):
    """Emitted when a critical alert is not acknowledged in time (or an operator escalates it) and
    moves from county to city."""

    level: Literal["city"]
    reason: Literal["not_acknowledged", "operator"] = "not_acknowledged"
    operator: str | None = None


class AlertResolved(_Data):
    """Emitted when an alert is closed."""

    operator: str
    resolution: str | None = None
    seconds_to_resolve: float | None = Field(None, ge=0)


class AlertNotified(_Data):
    """One attempt to notify a resident's emergency contact (an SMS or voice call through the
    notification gateway), on the alert's escalation path. The phone number is always masked here."""

    contact: str = Field(description="the contact's name and masked phone, e.g. 王建国 138****1234")
    position: int = Field(ge=0, description="the contact's place in the resident's calling order (0: none on file)")
    trigger: Literal["dispatch", "escalated"]
    attempt: int = Field(ge=0)
    outcome: Literal["sent", "retrying", "failed", "no_contact"]
    error: str | None = None
    next_attempt_at: datetime | None = None


ALERT_EVENTS: dict[str, type[BaseModel]] = {
    "eldercare.alert.raised.v1": AlertRaised,
    "eldercare.alert.updated.v1": AlertUpdated,
    "eldercare.alert.acknowledged.v1": AlertAcknowledged,
    "eldercare.alert.dispatched.v1": AlertDispatched,
    "eldercare.alert.escalated.v1": AlertEscalated,
    "eldercare.alert.resolved.v1": AlertResolved,
    "eldercare.alert.notified.v1": AlertNotified,
}
