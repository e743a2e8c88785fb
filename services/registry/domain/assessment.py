"""Ability assessment of older people, GB/T 42195-2022, as transcribed in SPEC §2: 26 items in
four groups (90 points), a level from the total, made one level worse by a diagnosed dementia or
other mental disorder or by two or more care-risk events in the last 30 days; coma is level 4.
Higher points mean more ability. Pure: unit-tested."""

from __future__ import annotations

from dataclasses import dataclass

# item code → maximum points
ITEMS: dict[str, int] = {
    # B1 self-care (max 32): eating, grooming, bathing, dressing upper, dressing lower and shoes,
    # bladder, bowel, toileting
    **{f"B1.{i}": 4 for i in range(1, 9)},
    # B2 basic mobility (max 15): bed transfer, bed-chair transfer, walking on level ground, stairs
    "B2.1": 4, "B2.2": 4, "B2.3": 4, "B2.4": 3,
    # B3 mental state (max 28): orientation to time, place, person, memory, understanding,
    # expression; aggression; depression; consciousness
    **{f"B3.{i}": 4 for i in range(1, 7)}, "B3.7": 1, "B3.8": 1, "B3.9": 2,
    # B4 perception and social participation (max 15): vision, hearing, daily affairs, going out by
    # transport, social contact
    "B4.1": 2, "B4.2": 2, "B4.3": 4, "B4.4": 3, "B4.5": 4,
}
MAX_TOTAL = sum(ITEMS.values())
assert MAX_TOTAL == 90 and len(ITEMS) == 26
REASONS = ("first", "routine", "immediate", "dispute", "other")
LEVEL_NAMES = {0: "intact 能力完好", 1: "mild 轻度失能", 2: "moderate 中度失能", 3: "severe 重度失能",
               4: "complete loss 完全失能"}


class AssessmentInvalid(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class AssessmentResult:
    total: int
    base_level: int
    level: int
    group_scores: dict[str, int]


def level_from_total(total: int) -> int:
    """0 intact = 90, 1 mild = 66-89, 2 moderate = 46-65, 3 severe = 30-45, 4 complete loss = 0-29."""
    if not 0 <= total <= MAX_TOTAL:
        raise AssessmentInvalid("items", f"total {total} is outside 0-{MAX_TOTAL}")
    if total == MAX_TOTAL:
        return 0
    if total >= 66:
        return 1
    if total >= 46:
        return 2
    if total >= 30:
        return 3
    return 4


def score(items: dict[str, int]) -> dict[str, int]:
    """Check every item is present and within its range; the points per group."""
    missing = [code for code in ITEMS if code not in items]
    if missing:
        raise AssessmentInvalid(f"items.{missing[0]}", f"item {missing[0]} is missing ({len(missing)} missing in all)")
    unknown = [code for code in items if code not in ITEMS]
    if unknown:
        raise AssessmentInvalid(f"items.{unknown[0]}", f"{unknown[0]} is not an item of GB/T 42195-2022")
    groups = {"B1": 0, "B2": 0, "B3": 0, "B4": 0}
    for code, points in items.items():
        if not isinstance(points, int) or isinstance(points, bool) or not 0 <= points <= ITEMS[code]:
            raise AssessmentInvalid(f"items.{code}", f"{code} takes 0-{ITEMS[code]} points, not {points!r}")
        groups[code[:2]] += points
    return groups


def assess(items: dict[str, int] | None = None, *, level: int | None = None, coma: bool = False,
           diagnosed_mental_disorder: bool = False, care_risk_events_30d: int = 0) -> AssessmentResult:
    """The level from the items (or a level given directly, when only the outcome was recorded)."""
    if care_risk_events_30d < 0:
        raise AssessmentInvalid("care_risk_events_30d", "cannot be negative")
    if items is not None:
        groups = score(items)
        total = sum(groups.values())
        base = level_from_total(total)
    elif level is not None:
        if not 0 <= level <= 4:
            raise AssessmentInvalid("level", "level is 0 (intact) to 4 (complete loss)")
        groups, total, base = {}, -1, level
    else:
        raise AssessmentInvalid("items", "give the 26 item scores, or the level")
    final = 4 if coma else base
    if not coma and (diagnosed_mental_disorder or care_risk_events_30d >= 2):
        final = min(4, base + 1)
    return AssessmentResult(total=total, base_level=base, level=final, group_scores=groups)
