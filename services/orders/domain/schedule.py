"""The order timers (pure, so they are unit-tested without a clock or a database): an order not
accepted in time expires; one not checked in by the scheduled start plus the grace period is late
at 15, 30 and 60 minutes and a no-show after that. Each order carries the time its next step is
due; the scheduler asks `due_step` what to do at that time and stores the next due time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

LATE_STEPS = (15, 30, 60)


@dataclass(frozen=True, slots=True)
class Timers:
    accept_within: timedelta = timedelta(hours=2)
    grace: timedelta = timedelta(minutes=10)
    no_show_after: timedelta = timedelta(minutes=90)   # after the scheduled start


@dataclass(frozen=True, slots=True)
class Step:
    action: str | None            # "expire", "late", "no_show" or None (nothing yet)
    late_minutes: int | None
    next_due: datetime | None     # None: no timer runs in this state


def accept_deadline(placed_at: datetime, scheduled_start: datetime, timers: Timers) -> datetime:
    """Accepted within `accept_within` of placing, and never after the visit should have begun."""
    return min(placed_at + timers.accept_within, scheduled_start)


def first_due(state: str, placed_at: datetime, scheduled_start: datetime, timers: Timers) -> datetime | None:
    if state == "placed":
        return accept_deadline(placed_at, scheduled_start, timers)
    if state in ("accepted", "assigned"):
        return scheduled_start + timers.grace + timedelta(minutes=LATE_STEPS[0])
    return None


def due_step(state: str, now: datetime, placed_at: datetime, scheduled_start: datetime, late_minutes: int,
             timers: Timers) -> Step:
    """What the scheduler does for an order whose due time has come."""
    if state == "placed":
        deadline = accept_deadline(placed_at, scheduled_start, timers)
        if now >= deadline:
            return Step("expire", None, None)
        return Step(None, None, deadline)
    if state not in ("accepted", "assigned"):
        return Step(None, None, None)
    if now >= scheduled_start + timers.no_show_after:
        return Step("no_show", None, None)
    lateness = now - (scheduled_start + timers.grace)
    reached = [m for m in LATE_STEPS if lateness >= timedelta(minutes=m)]
    pending = [m for m in LATE_STEPS if m > late_minutes and lateness < timedelta(minutes=m)]
    next_due = (scheduled_start + timers.grace + timedelta(minutes=pending[0]) if pending
                else scheduled_start + timers.no_show_after)
    if reached and reached[-1] > late_minutes:
        return Step("late", reached[-1], next_due)
    return Step(None, None, next_due)
