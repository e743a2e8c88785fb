"""The alert state machine: open → acknowledged → resolved; dispatch records who was sent (and
acknowledges an open alert: sending someone is answering it); escalation moves an unresolved alert
from the county to the city once."""

from __future__ import annotations

from typing import Literal

from shared.problems import Conflict

Status = Literal["open", "acknowledged", "resolved"]
Action = Literal["ack", "dispatch", "resolve", "escalate"]


class AlertAlreadyResolved(Conflict):
    slug = "alert-resolved"


class AlertAlreadyAcknowledged(Conflict):
    slug = "alert-acknowledged"


class AlertAlreadyEscalated(Conflict):
    slug = "alert-escalated"


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
