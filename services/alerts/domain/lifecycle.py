"""The alert state machine: open → acknowledged → resolved; dispatch records who was sent (and
acknowledges an open alert: sending someone is answering it); escalation moves an unresolved alert
from the county to the city once."""

from __future__ import annotations

from typing import Literal

from shared.problems import DomainError

Status = Literal["open", "acknowledged", "resolved"]
Action = Literal["ack", "dispatch", "resolve", "escalate"]


class AlertAlreadyResolved(DomainError):
    """A resolved alert takes no further step."""


class AlertAlreadyAcknowledged(DomainError):
    """Acknowledged twice: the first operator's time is the one that counts."""


class AlertAlreadyEscalated(DomainError):
    """Escalation moves an alert to the city once."""


def check(action: Action, status: Status, level: str) -> list[str]:
    """The steps an action takes from this state (raises the named refusal otherwise)."""
    if status == "resolved":
        raise AlertAlreadyResolved(f"The alert is resolved; it cannot be {_past(action)}.", field="status")
    if action == "ack":
        if status == "acknowledged":
            raise AlertAlreadyAcknowledged("The alert is already acknowledged.", field="status")
        return ["acknowledged"]
    if action == "dispatch":
        return (["acknowledged"] if status == "open" else []) + ["dispatched"]
    if action == "resolve":
        return (["acknowledged"] if status == "open" else []) + ["resolved"]
    if level == "city":
        raise AlertAlreadyEscalated("The alert is already with the city.", field="level")
    return ["escalated"]


def _past(action: Action) -> str:
    return {"ack": "acknowledged", "dispatch": "dispatched", "resolve": "resolved", "escalate": "escalated"}[action]
