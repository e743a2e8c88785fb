"""Reading the aggregates and the task-list targets (never personal data)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import asyncpg

from services.reporting.domain.folding import CITY
from services.reporting.domain.targets import (
    BEDS_PER_1000, NURSING_SHARE, bed_target, family_bed_targets, indicator,
)
from shared.buckets import AGE_BANDS, age_bands, band_label, elderly_count
from shared.regions import load_counties

FACILITY_TYPES = ("county_special_care", "street_center", "daycare_center", "township_home", "happiness_home",
                  "institution")


async def load_counts(conn: asyncpg.Connection) -> dict[str, dict[str, dict[str, int]]]:
    """{scope: {dimension: {bucket: n}}} for every county and the city."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in await conn.fetch("SELECT county_code, dim, bucket, n FROM agg_counts WHERE n <> 0"):
        out[r["county_code"]][r["dim"]][r["bucket"]] = r["n"]
    return out


async def load_facilities(conn: asyncpg.Connection) -> dict[str, dict[str, dict[str, int]]]:
    """{scope: {facility_type: {count, beds, nursing_beds, occupied}}}."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    rows = await conn.fetch("SELECT county_code, facility_type, count(*) AS count, sum(beds) AS beds, "
                            "sum(nursing_beds) AS nursing_beds, sum(occupied) AS occupied FROM facilities "
                            "GROUP BY county_code, facility_type")
    for r in rows:
        for scope in (r["county_code"], CITY):
            slot = out[scope].setdefault(r["facility_type"], {"count": 0, "beds": 0, "nursing_beds": 0, "occupied": 0})
            for key in ("count", "beds", "nursing_beds", "occupied"):
                slot[key] += int(r[key])
    return out


async def load_training(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {CITY: {"trainees": 0, "sessions": 0}}
    for r in await conn.fetch("SELECT * FROM training"):
        out[r["county_code"]] = {"trainees": r["trainees"], "sessions": r["sessions"]}
        out[CITY]["trainees"] += r["trainees"]
        out[CITY]["sessions"] += r["sessions"]
    return out


def scope_view(scope: str, counts: dict, facilities: dict, training: dict, today: date) -> dict:
    """The aggregates of one county or the city."""
    dims = counts.get(scope, {})
    months = dims.get("birth_month", {})
    bands = age_bands(months, today)
    by_type = {t: facilities.get(scope, {}).get(t, {"count": 0, "beds": 0, "nursing_beds": 0, "occupied": 0})
               for t in FACILITY_TYPES}
    return {
        "scope": scope,
        "as_of": today.isoformat(),
        "residents": {
            "registered": sum(dims.get("status", {}).values()),
            "active": dims.get("status", {}).get("active", 0),
            "elderly_60plus": elderly_count(months, today),
            "advanced_age_80plus": sum(bands[band_label(lo, hi)] for lo, hi in AGE_BANDS if lo >= 80),
            "centenarians": bands.get("100+", 0),
            "by_age_band": bands,
            "by_gender": dims.get("gender", {}),
            "by_category": dims.get("category", {}),
            "by_living_arrangement": dims.get("living_arrangement", {}),
            "by_ability_level": dims.get("ability_level", {}),
            "by_status": dims.get("status", {}),
        },
        "family_beds": dims.get("family_bed", {}).get("yes", 0),
        "facilities": {
            "by_type": by_type,
            "beds": sum(v["beds"] for v in by_type.values()),
            "nursing_beds": sum(v["nursing_beds"] for v in by_type.values()),
            "occupied": sum(v["occupied"] for v in by_type.values()),
        },
        "training": training.get(scope, {"trainees": 0, "sessions": 0}),
    }


async def aggregates(conn: asyncpg.Connection, today: date) -> dict[str, dict]:
    """Every scope's aggregates and the stream sequence they include."""
    counts = await load_counts(conn)
    facilities = await load_facilities(conn)
    training = await load_training(conn)
    seq = await conn.fetchval("SELECT seq FROM stream_state WHERE id = 1")
    scopes = [CITY, *load_counties()]
    return {"seq": seq, "scopes": {s: scope_view(s, counts, facilities, training, today) for s in scopes}}


def targets_table(views: dict[str, dict], active_counties: set[str]) -> list[dict]:
    """The task list, one row per county and the city row, each indicator with target, actual, progress."""
    counties = load_counties()
    elderly = {c: views[c]["residents"]["elderly_60plus"] for c in counties}
    city_family_target, family_targets = family_bed_targets(elderly)
    rows = []
    for code, county in counties.items():
        rows.append(_target_row(code, county.name_zh, county.name_en, views[code], family_targets[code], {
            "county_special_care": county.county_special_care_target,
            "street_center": county.street_center_target,
            "daycare_center": county.daycare_center_target,
            "township_home": county.township_homes_existing,
            "happiness_home": county.happiness_homes_built,
        }, county.training_task_2022, county.smart_platform_target, 1 if code in active_counties else 0,
            county.elderly_60plus))
    totals = {k: sum(getattr(c, k) for c in counties.values()) for k in (
        "county_special_care_target", "street_center_target", "daycare_center_target", "township_homes_existing",
        "happiness_homes_built", "training_task_2022", "smart_platform_target", "elderly_60plus")}
    rows.append(_target_row(CITY, "濮阳市", "Puyang City", views[CITY], city_family_target, {
        "county_special_care": totals["county_special_care_target"],
        "street_center": totals["street_center_target"],
        "daycare_center": totals["daycare_center_target"],
        "township_home": totals["township_homes_existing"],
        "happiness_home": totals["happiness_homes_built"],
    }, totals["training_task_2022"], totals["smart_platform_target"],
        sum(1 for c in counties if c in active_counties), totals["elderly_60plus"]))
    return rows


def _target_row(code: str, name_zh: str, name_en: str, view: dict, family_target: int, facility_targets: dict,
                training_target: int, platform_target: int, platform_actual: int, published_elderly: int) -> dict:
    elderly = view["residents"]["elderly_60plus"]
    beds = view["facilities"]["beds"]
    nursing = view["facilities"]["nursing_beds"]
    by_type = view["facilities"]["by_type"]
    return {
        "county_code": code,
        "name_zh": name_zh,
        "name_en": name_en,
        "elderly_60plus": {"registry": elderly, "task_list": published_elderly},
        "indicators": {
            "beds": indicator(bed_target(elderly), beds, "beds"),
            "beds_per_1000": indicator(BEDS_PER_1000, round(beds * 1000 / elderly, 2) if elderly else None,
                                       "beds per 1000 elders"),
            "nursing_bed_share": indicator(float(NURSING_SHARE), round(nursing / beds, 4) if beds else None, "share"),
            "family_beds": indicator(family_target, view["family_beds"], "beds"),
            **{f"facilities_{t}": indicator(target, by_type[t]["count"], "facilities")
               for t, target in facility_targets.items()},
            "training": indicator(training_target, view["training"]["trainees"], "person-times"),
            "smart_platform": indicator(platform_target, platform_actual, "platforms"),
        },
    }
