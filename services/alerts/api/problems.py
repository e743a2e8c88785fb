"""The alerts service's domain errors as HTTP answers (RFC 9457 problem details): the one table."""

from __future__ import annotations

from services.alerts.domain.lifecycle import AlertAlreadyAcknowledged, AlertAlreadyEscalated, AlertAlreadyResolved
from shared.problems import Conflict, ProblemMap, ProblemType

PROBLEMS: ProblemMap = {
    AlertAlreadyResolved: ProblemType(Conflict, "alert-resolved"),
    AlertAlreadyAcknowledged: ProblemType(Conflict, "alert-acknowledged"),
    AlertAlreadyEscalated: ProblemType(Conflict, "alert-escalated"),
}
