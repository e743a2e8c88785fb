"""The task list's indicators and their targets (pure): beds 39 per 1000 elders, nursing-type
share ≥ 55%, family elder-care beds 7.2‰ of the elderly population with county targets
apportioned from the city target so they add up to it exactly, facility coverage, training."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from shared.apportion import apportion

BEDS_PER_1000 = 39
NURSING_SHARE = Fraction(55, 100)
FAMILY_BED_RATE = Fraction(72, 10000)  # 7.2‰


def round_half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2))


def family_bed_targets(elderly: Mapping[str, int]) -> tuple[int, dict[str, int]]:
    """City target (7.2‰ of the city's elderly, rounded) and county targets that sum to it."""
    city = round_half_up(sum(elderly.values()) * FAMILY_BED_RATE)
    return city, apportion(city, elderly)


def bed_target(elderly: int) -> int:
    return round_half_up(elderly * Fraction(BEDS_PER_1000, 1000))


def progress(actual: float | int | None, target: float | int | None) -> float | None:
    """Actual over target (1.0 = met); None when there is no target."""
    if target in (None, 0) or actual is None:
        return None
    return round(float(actual) / float(target), 4)


def indicator(target, actual, unit: str) -> dict:
    return {"target": target, "actual": actual, "progress": progress(actual, target), "unit": unit}
