"""Events of the alerts service's alert stream (topic eldercare.alerts.alerts.v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class AlertUpdated(_Data):
    """Emitted when a repeated signal joins an open alert."""

    count: int = Field(ge=1)


class AlertAcknowledged(_Data):
    """Emitted when an operator acknowledges an alert."""

    operator: str
    seconds_to_acknowledge: float = Field(ge=0)


class AlertEscalated(_Data):
    """Emitted when a critical alert is not acknowledged in time and moves from county to city."""

    level: Literal["city"]


class AlertResolved(_Data):
    """Emitted when an alert is closed."""

    operator: str
    resolution: str | None = None


ALERT_EVENTS: dict[str, type[BaseModel]] = {
    "eldercare.alert.raised.v1": AlertRaised,
    "eldercare.alert.updated.v1": AlertUpdated,
    "eldercare.alert.acknowledged.v1": AlertAcknowledged,
    "eldercare.alert.escalated.v1": AlertEscalated,
    "eldercare.alert.resolved.v1": AlertResolved,
}
