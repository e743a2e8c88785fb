"""Folding the orders and alerts topics (pure): one fact row per order and per alert, which each
event of that order or alert moves forward. The figures per county and the city (completion rate,
time to accept, EVV verification rate, the share of alerts acknowledged within 60 s, medians and
p90s, …) are computed from these rows by PostgreSQL (services/reporting/service_store.py), so the
percentiles are exact (percentile_cont, as the alerts service's own /v1/kpis).

Applying an event twice gives the same row (every field is set, or set once, from the event), so
a redelivery the inbox no longer knows changes nothing."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "service_categories.csv"
OTHER_CATEGORY = "其他"
# A check-in by the scheduled start plus this is on time: the orders service's default grace
# period (ORDERS grace_minutes, 10-15 min; it marks a visit late 15 min after the grace).
ON_TIME_GRACE = timedelta(minutes=10)
# Orders that ended without a completed visit (the denominator of the completion rate with the completed).
NOT_COMPLETED = ("cancelled", "rejected", "expired", "no_show")
OPEN_ORDER_STATES = ("placed", "accepted", "assigned", "checked_in")
# How far along the lifecycle a state is: an older event delivered again never moves an order back.
STATE_RANK = {"placed": 0, "accepted": 1, "assigned": 2, "checked_in": 3, "completed": 4, "rated": 5,
              **{state: 4 for state in NOT_COMPLETED}}
FUNDING_SOURCES = ("government", "collective", "social", "personal")  # 政府 集体 社会 个人
# Alarm centres held up as models (UK TSA): 97.5 % acknowledged within 60 s, 99 % within 180 s;
# EVV: our aim is every completed visit verified, where US states require 90 %.
ALERT_TARGETS = {"acked_within_60s": 0.975, "acked_within_180s": 0.99}
ORDER_TARGETS = {"evv_verification_rate": 1.0, "evv_verification_rate_us_minimum": 0.9}

ORDER_PLACED = "eldercare.order.placed.v1"
ORDER_SETTLED = "eldercare.order.settled.v1"
ALERT_PREFIX = "eldercare.alert."
ORDER_PREFIX = "eldercare.order."


@lru_cache(maxsize=1)
def service_categories() -> dict[str, str]:
    """service code -> its GB/T 43153 category (the menu's reference file)."""
    with REFERENCE.open(encoding="utf-8") as f:
        return {row["code"]: row["category_gbt43153"] for row in csv.DictReader(f)}


def category_of(service_code: str | None) -> str:
    return service_categories().get(service_code or "", OTHER_CATEGORY)


class OrderFacts(NamedTuple):
    """What reporting keeps of one order (no resident, caregiver or place: figures only)."""

    order_id: str
    county_code: str
    category: str | None = None
    service_code: str | None = None
    state: str | None = None
    placed_at: datetime | None = None
    scheduled_start: datetime | None = None
    accepted_at: datetime | None = None
    checked_in_at: datetime | None = None
    completed: bool = False
    evv_status: str | None = None  # as the check-out found it: verified or exception
    confirmed: bool = False        # an exception the county confirmed afterwards
    late: bool = False
    rating: int | None = None
    settled: bool = False
    government_fen: int = 0
    collective_fen: int = 0
    social_fen: int = 0
    personal_fen: int = 0


class AlertFacts(NamedTuple):
    """What reporting keeps of one alert."""

    alert_id: str
    county_code: str
    severity: str | None = None
    cause: str | None = None
    raised_at: datetime | None = None
    acked_at: datetime | None = None
    ack_seconds: float | None = None
    resolved_at: datetime | None = None
    resolve_seconds: float | None = None
    escalated: bool = False
    silenced: bool = False
    # Acknowledged first by the system (it closed the alert before an operator answered: the elder
    # came back into the zone, the overdue visit was logged): no answer to measure, left out of the
    # figures as the alerts service's /v1/kpis leaves it out.
    closed_by_system: bool = False


def _first(current: datetime | None, new: datetime | None) -> datetime | None:
    return current if current is not None else new


def _later_state(current: str | None, new: str) -> str:
    if current is None or STATE_RANK.get(new, 0) >= STATE_RANK.get(current, 0):
        return new
    return current


def apply_order_event(current: OrderFacts | None, event_type: str, data, at: datetime | None) -> OrderFacts | None:
    """The order's facts after an event (None: nothing changed). `at` is the envelope's time, the
    placement time of a placed event (its data has none)."""
    facts = current or OrderFacts(order_id=str(data.order_id), county_code=data.county_code)
    if event_type == ORDER_PLACED:
        new = facts._replace(
            county_code=data.county_code, category=category_of(data.service_code), service_code=data.service_code,
            state=_later_state(facts.state, "placed"), placed_at=_first(facts.placed_at, at),
            scheduled_start=data.scheduled_start)
    elif event_type == ORDER_SETTLED:
        new = facts._replace(settled=True, government_fen=data.government_fen, collective_fen=data.collective_fen,
                             social_fen=data.donation_fen, personal_fen=data.personal_fen)
    else:
        kind = event_type.removeprefix(ORDER_PREFIX).removesuffix(".v1")
        if kind == "late":
            new = facts._replace(late=True)
        elif kind == "visit_confirmed":
            new = facts._replace(confirmed=True)
        else:
            new = facts._replace(state=_later_state(facts.state, data.state))
            if kind == "accepted":
                new = new._replace(accepted_at=_first(facts.accepted_at, data.at))
            elif kind == "checked_in":
                new = new._replace(checked_in_at=_first(facts.checked_in_at, data.at))
            elif kind == "completed":
                new = new._replace(completed=True, evv_status=data.evv_status or facts.evv_status)
            elif kind == "rated":
                new = new._replace(completed=True, rating=data.rating)
    return None if new == current else new


def apply_alert_event(current: AlertFacts | None, event_type: str, data) -> AlertFacts | None:
    """The alert's facts after an event (None: nothing changed). Updates (a repeated signal) and
    dispatches change no figure reporting shows."""
    facts = current or AlertFacts(alert_id=str(data.alert_id), county_code=data.county_code)
    kind = event_type.removeprefix(ALERT_PREFIX).removesuffix(".v1")
    if kind == "raised":
        new = facts._replace(severity=data.severity, cause=data.cause, raised_at=_first(facts.raised_at, data.at),
                             silenced=bool(data.silenced))
    elif kind == "acknowledged":
        new = facts._replace(acked_at=_first(facts.acked_at, data.at),
                             closed_by_system=facts.closed_by_system if facts.acked_at is not None
                             else data.operator == "system",
                             ack_seconds=facts.ack_seconds if facts.ack_seconds is not None
                             else float(data.seconds_to_acknowledge))
    elif kind == "resolved":
        seconds = data.seconds_to_resolve
        if seconds is None and facts.raised_at is not None:
            seconds = max(0.0, (data.at - facts.raised_at).total_seconds())
        new = facts._replace(resolved_at=_first(facts.resolved_at, data.at),
                             resolve_seconds=facts.resolve_seconds if facts.resolve_seconds is not None else seconds)
    elif kind == "escalated":
        new = facts._replace(escalated=True)
    else:
        return None
    return None if new == current else new


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def orders_view(row: dict | None, by_category: dict[str, int], by_state: dict[str, int]) -> dict:
    """A scope's order figures from its aggregate row (None: no order seen)."""
    r = row or {}
    n = lambda key: int(r.get(key) or 0)  # noqa: E731
    completed, ended = n("completed"), n("completed") + n("not_completed")
    ratings = {str(k): n(f"rating_{k}") for k in range(1, 6)}
    spend = {source: n(f"{source}_fen") for source in FUNDING_SOURCES}
    return {
        "placed": n("placed"),
        "open": n("open"),
        "by_category": dict(sorted(by_category.items())),
        "by_state": dict(sorted(by_state.items())),
        "completed": completed,
        "ended": ended,
        "completion_rate": share(completed, ended),
        "accepted": n("accepted"),
        "accept_seconds_median": seconds(r.get("accept_median")),
        "accept_seconds_p90": seconds(r.get("accept_p90")),
        "checked_in": n("checked_in"),
        "on_time_check_ins": n("on_time"),
        "on_time_check_in_share": share(n("on_time"), n("checked_in")),
        "late": n("late"),
        "evv_verified": n("evv_verified"),
        "evv_exceptions": n("evv_exceptions"),
        "evv_confirmed": n("evv_confirmed"),
        "evv_verification_rate": share(n("evv_verified"), completed),
        "rated": n("rated"),
        "rating_mean": round(n("rating_sum") / n("rated"), 2) if n("rated") else None,
        "ratings": ratings,
        "subsidy": {
            "settled_orders": n("settled"),
            "spend_fen": spend,
            "subsidy_fen": spend["government"] + spend["collective"] + spend["social"],
            "total_fen": sum(spend.values()),
            # The orders events carry no budgets (the orders service's GET /v1/budgets has them).
            "budget_fen": None,
        },
        "targets": ORDER_TARGETS,
    }


def alerts_view(row: dict | None) -> dict:
    """A scope's alert figures. Shares are of every alert raised (not silenced), so an alert nobody
    acknowledged counts against the target, as in the alerts service's /v1/kpis."""
    r = row or {}
    n = lambda key: int(r.get(key) or 0)  # noqa: E731
    alerts = n("alerts")
    return {
        "alerts": alerts,
        "critical": n("critical"),
        "open": n("open"),
        "acknowledged": n("acknowledged"),
        "acked_within_60s": share(n("within_60"), alerts),
        "acked_within_180s": share(n("within_180"), alerts),
        "ack_seconds_median": seconds(r.get("ack_median")),
        "ack_seconds_p90": seconds(r.get("ack_p90")),
        "resolved": n("resolved"),
        "resolve_seconds_median": seconds(r.get("resolve_median")),
        "resolve_seconds_p90": seconds(r.get("resolve_p90")),
        "escalations": n("escalations"),
        "silenced": n("silenced"),
        "targets": ALERT_TARGETS,
    }
