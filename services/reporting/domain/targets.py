"""The task list's indicators and their targets (pure).

Two figures per population-based indicator, never one in the place of the other (SPEC §2
"Targets and KPIs"): the **official target**, the document's own figure computed from the
populations it was written with (the task list's `elderly_60plus`), and the **live requirement**,
the same rule applied to today's registry. Progress is measured against the official target.

Rules: beds 39 per 1000 elders; nursing-type share ≥ 55% (all institutions, and the county
special-care institutions on their own); family elder-care beds 7.2‰ of the elderly, the city
figure rounded and the county figures apportioned from it so they add up to it exactly (the
published table: 4,800 for the city, 1,284 for Puyang County). Bed targets are apportioned the
same way so that a county column sums to the city's. Coverage indicators count units from the
task list's columns: one special-care institution per county, one centre per street, one
day-care centre per community, every existing township home upgraded, a facility in every
village (`villages`). A county platform is live only if it posted within the last 24 hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from shared.apportion import apportion

BEDS_PER_1000 = 39
NURSING_SHARE = Fraction(55, 100)
FAMILY_BED_RATE = Fraction(72, 10000)  # 7.2‰
PLATFORM_LIVE_WINDOW = timedelta(hours=24)
CITY = "city"

# Coverage indicators: (indicator, the task list's target column, its "built" column, its
# "this year's task" column). Township homes have no target column: every existing home is to be
# upgraded, so the existing count is the target. Villages: the target is every village; the
# document's "built" figure is the happiness homes it counts.
COVERAGE: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("facilities_county_special_care", "county_special_care_target", "county_special_care_built",
     "county_special_care_task_2022"),
    ("facilities_street_center", "street_center_target", "street_center_built", "street_center_task_2022"),
    ("facilities_daycare_center", "daycare_center_target", "daycare_center_built", "daycare_center_task_2022"),
    ("facilities_township_home", "township_homes_existing", None, "township_homes_task_2022"),
    ("facilities_happiness_home", "villages", "happiness_homes_built", None),
)


def round_half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2))


def family_bed_targets(elderly: Mapping[str, int]) -> tuple[int, dict[str, int]]:
    """City target (7.2‰ of the city's elderly, rounded) and county targets that sum to it."""
    city = round_half_up(sum(elderly.values()) * FAMILY_BED_RATE)
    return city, apportion(city, elderly)


def bed_targets(elderly: Mapping[str, int]) -> tuple[int, dict[str, int]]:
    """City bed target (39 per 1000 of the city's elderly, rounded) and county targets that sum to it."""
    city = round_half_up(sum(elderly.values()) * Fraction(BEDS_PER_1000, 1000))
    return city, apportion(city, elderly)


def bed_target(elderly: int) -> int:
    return round_half_up(elderly * Fraction(BEDS_PER_1000, 1000))


@dataclass(frozen=True, slots=True)
class Official:
    """One scope's official figures from the task list (targets, the document's built figures,
    this year's tasks), keyed by indicator."""

    elderly: int
    target: dict[str, int | float]
    built: dict[str, int | None]
    task: dict[str, int | None]


def official_targets(counties: Iterable) -> dict[str, Official]:
    """Every county's and the city's official figures, from the task list's rows alone (`County`
    records of shared/regions.py); the city's are the sum of the counties' (its family-bed and bed
    targets are computed from the city's population and apportioned down)."""
    rows = list(counties)
    elderly = {c.code: c.elderly_60plus for c in rows}
    city_family, family = family_bed_targets(elderly)
    city_beds, beds = bed_targets(elderly)
    out: dict[str, Official] = {}
    for c in rows:
        target: dict[str, int | float] = {
            "beds": beds[c.code], "beds_per_1000": BEDS_PER_1000, "nursing_bed_share": float(NURSING_SHARE),
            "nursing_bed_share_special_care": float(NURSING_SHARE), "family_beds": family[c.code],
            "training": c.training_task_2022, "smart_platform": c.smart_platform_target,
        }
        built: dict[str, int | None] = {}
        task: dict[str, int | None] = {"training": c.training_task_2022}
        for key, target_col, built_col, task_col in COVERAGE:
            target[key] = getattr(c, target_col)
            built[key] = getattr(c, built_col) if built_col else None
            task[key] = getattr(c, task_col) if task_col else None
        out[c.code] = Official(elderly=c.elderly_60plus, target=target, built=built, task=task)
    out[CITY] = Official(elderly=sum(elderly.values()),
                         target={**_sums([o.target for o in out.values()]), "beds": city_beds,
                                 "family_beds": city_family, "beds_per_1000": BEDS_PER_1000,
                                 "nursing_bed_share": float(NURSING_SHARE),
                                 "nursing_bed_share_special_care": float(NURSING_SHARE)},
                         built=_sums([o.built for o in out.values()]), task=_sums([o.task for o in out.values()]))
    return out


def _sums(parts: list[dict]) -> dict:
    """Key-wise sums; a figure the document leaves out (None) stays out for the city as well."""
    keys = parts[0] if parts else {}
    return {k: None if any(p[k] is None for p in parts) else sum(p[k] for p in parts) for k in keys}


def live_requirements(elderly_live: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """The population-based rules on today's registry ({scope: {indicator: figure}}), city included;
    county figures apportioned from the city's like the official ones."""
    city_family, family = family_bed_targets(elderly_live) if sum(elderly_live.values()) else (
        0, {k: 0 for k in elderly_live})
    city_beds, beds = bed_targets(elderly_live) if sum(elderly_live.values()) else (0, {k: 0 for k in elderly_live})
    out = {c: {"beds": beds[c], "family_beds": family[c]} for c in elderly_live}
    out[CITY] = {"beds": city_beds, "family_beds": city_family}
    return out


def platform_live(last_heard: datetime | None, now: datetime) -> bool:
    """A county platform is live if it posted within the last 24 hours."""
    return last_heard is not None and now - last_heard <= PLATFORM_LIVE_WINDOW


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def progress(actual: float | int | None, target: float | int | None) -> float | None:
    """Actual over target (1.0 = met); None when there is no target."""
    if target in (None, 0) or actual is None:
        return None
    return round(float(actual) / float(target), 4)


def indicator(target, actual, unit: str, *, live_requirement=None, built=None, task=None) -> dict:
    """One indicator's figures: `target` is the official one (progress is against it);
    `live_requirement` the same rule on today's registry (None where the rule counts units of the
    task list, not people); `built` and `task` the document's own built figure and 2022 task."""
    return {"target": target, "actual": actual, "progress": progress(actual, target), "unit": unit,
            "live_requirement": live_requirement, "task_list_built": built, "task_2022": task}
