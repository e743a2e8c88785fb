"""Who is owed what care: the visit frequency of each group and who needs a no-activity timer
(SPEC §2: high risk weekly, key groups monthly, others quarterly)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from services.alerts.domain.rules import Rules

Group = Literal["high_risk", "key_group", "others"]
SOLITARY = frozenset({"alone", "empty_nest"})
KEY_CATEGORIES = frozenset({"severe_disability", "dementia", "extreme_poverty_centralised",
                            "extreme_poverty_dispersed", "family_planning_special"})


@dataclass(frozen=True, slots=True)
class Elder:
    """The projection's view of a resident that the care rules read."""

    birth_date: date
    living_arrangement: str
    categories: tuple[str, ...] = ()
    ability_level: int | None = None
    status: str = "active"


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def visit_group(elder: Elder, today: date) -> Group:
    """High risk: 80+ living alone or empty-nest (a life-threatening illness also counts, but the
    registry does not carry diagnoses yet). Key groups: disabled (the severe-disability category
    or ability level 3-4), dementia, extreme poverty, family-planning special families."""
    if age_on(elder.birth_date, today) >= 80 and elder.living_arrangement in SOLITARY:
        return "high_risk"
    if KEY_CATEGORIES.intersection(elder.categories) or (elder.ability_level or 0) >= 3:
        return "key_group"
    return "others"


def visit_interval(group: Group, rules: Rules) -> timedelta:
    days = {"high_risk": rules.visits.high_risk_days, "key_group": rules.visits.key_group_days,
            "others": rules.visits.others_days}[group]
    return timedelta(days=days)


def visit_due(elder: Elder, last_visit: datetime, rules: Rules) -> datetime | None:
    """When the next visit is owed (None for those not in care: deceased, transferred, in an
    institution, whose visits the institution owes)."""
    if elder.status != "active" or elder.living_arrangement == "institution":
        return None
    return last_visit + visit_interval(visit_group(elder, last_visit.date()), rules)


def warns_when_overdue(group: Group, rules: Rules) -> bool:
    return group != "others" or rules.visits.warn_others


def needs_activity_timer(elder: Elder) -> bool:
    """A solitary or empty-nest elder whose home devices we hear from: silence is a warning."""
    return elder.status == "active" and elder.living_arrangement in SOLITARY


def activity_due(last_seen: datetime, rules: Rules) -> datetime:
    return last_seen + timedelta(hours=rules.no_activity_hours)
