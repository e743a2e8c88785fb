"""Reporting's queries: the aggregates and the task-list targets (never personal data), the
consistency check's reads and the rebuild's reset."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

import asyncpg

from services.reporting import service_store
from services.reporting.domain.folding import CITY
from services.reporting.domain.targets import (
    BEDS_PER_1000, COVERAGE, Official, indicator, live_requirements, official_targets, platform_live, share,
)
from shared.buckets import AGE_BANDS, age_bands, aged_at_least, band_label, counts_sql, elderly_count
from shared.regions import TOWNSHIPS, load_counties

FACILITY_TYPES = ("county_special_care", "street_center", "daycare_center", "township_home", "happiness_home",
                  "institution")
REBUILD_TABLES = ("residents", "agg_counts", "facilities", "training", "training_records", "county_activity",
                  *service_store.TABLES)


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


async def last_heard(conn: asyncpg.Connection) -> dict[str, datetime]:
    """When each county platform last posted: {county_code: last_event_at}."""
    return {r["county_code"]: r["last_event_at"]
            for r in await conn.fetch("SELECT county_code, last_event_at FROM county_activity")}


async def facility_reports(conn: asyncpg.Connection) -> list[dict]:
    """Every facility report as folded, one dict per facility."""
    return [dict(r) for r in await conn.fetch(
        "SELECT county_code, facility_id, facility_type, beds, nursing_beds, occupied, reported_at "
        "FROM facilities")]


async def training_records(conn: asyncpg.Connection) -> list[dict]:
    """Every training record folded, by event id."""
    return [dict(r) for r in await conn.fetch(
        "SELECT event_id, county_code, trainees FROM training_records")]


async def training_totals(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """{county_code: {trainees, sessions}} as folded."""
    return {r["county_code"]: {"trainees": r["trainees"], "sessions": r["sessions"]}
            for r in await conn.fetch("SELECT county_code, trainees, sessions FROM training")}


async def residents_by_id(conn: asyncpg.Connection, ids: list[str]) -> list[asyncpg.Record]:
    """The folded state of these residents (those reporting has seen)."""
    return await conn.fetch("SELECT * FROM residents WHERE resident_id = ANY($1::text[]::uuid[])", ids)


async def reset_for_rebuild(conn: asyncpg.Connection, consumer: str) -> int:
    """Empty every folded table and the consumer's inbox, in the caller's transaction; the stream's seq."""
    await conn.execute(f"TRUNCATE {', '.join(REBUILD_TABLES)}")
    await conn.execute("DELETE FROM inbox WHERE consumer = $1", consumer)
    return await conn.fetchval("SELECT seq FROM stream_state WHERE id = 1")


# The key group of the family-doctor KPI: the share of elders this old with a contract.
FAMILY_DOCTOR_AGE = 65


def residents_view(dims: dict[str, dict[str, int]], today: date) -> dict:
    """The resident figures of one area (city, county, township or village) from its counters."""
    months = dims.get("birth_month", {})
    bands = age_bands(months, today)
    return {
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
    }


def family_doctor_view(dims: dict[str, dict[str, int]], today: date) -> dict:
    """The KPI: active elders aged 65+ with a family-doctor contract, of all active elders 65+."""
    elders = aged_at_least(dims.get("birth_month", {}), FAMILY_DOCTOR_AGE, today)
    signed = aged_at_least(dims.get("family_doctor", {}), FAMILY_DOCTOR_AGE, today)
    return {"elderly_65plus": elders, "contracted_65plus": signed, "share_65plus": share(signed, elders),
            "contracted": sum(dims.get("family_doctor", {}).values())}


def scope_view(scope: str, counts: dict, facilities: dict, training: dict, today: date) -> dict:
    """The aggregates of one county or the city."""
    dims = counts.get(scope, {})
    by_type = {t: dict(facilities.get(scope, {}).get(t, {"count": 0, "beds": 0, "nursing_beds": 0, "occupied": 0}))
               for t in FACILITY_TYPES}
    for slot in by_type.values():
        slot["occupancy"] = share(slot["occupied"], slot["beds"])  # beds occupied against beds
    return {
        "scope": scope,
        "as_of": today.isoformat(),
        "residents": residents_view(dims, today),
        "family_beds": dims.get("family_bed", {}).get("yes", 0),
        "family_doctor": family_doctor_view(dims, today),
        "facilities": {
            "by_type": by_type,
            "beds": sum(v["beds"] for v in by_type.values()),
            "nursing_beds": sum(v["nursing_beds"] for v in by_type.values()),
            "occupied": sum(v["occupied"] for v in by_type.values()),
            "occupancy": share(sum(v["occupied"] for v in by_type.values()), sum(v["beds"] for v in by_type.values())),
        },
        "training": training.get(scope, {"trainees": 0, "sessions": 0}),
    }


async def aggregates(conn: asyncpg.Connection, today: date) -> dict[str, dict]:
    """Every scope's aggregates and the stream sequence they include."""
    counts = await load_counts(conn)
    facilities = await load_facilities(conn)
    training = await load_training(conn)
    seq = await conn.fetchval("SELECT seq FROM stream_state WHERE id = 1")
    services = await service_store.service_views(conn)
    scopes = [CITY, *load_counties()]
    return {"seq": seq, "scopes": {s: {**scope_view(s, counts, facilities, training, today), **services[s]}
                                   for s in scopes}}


# ------------------------------------------------------------------ below the county

_TOWNSHIP_COUNTS = counts_sql("residents", area="township", where="county_code = $1")
_VILLAGE_COUNTS = counts_sql("residents", area="village", where="county_code = $1 AND township = $2")


def area_view(name: str, dims: dict[str, dict[str, int]], today: date) -> dict:
    """A township's or a village's figures: the county's resident dimensions, family beds and the
    family-doctor KPI (facility and training reports name no township: they stay county figures)."""
    return {"name": name, "residents": residents_view(dims, today),
            "family_beds": dims.get("family_bed", {}).get("yes", 0),
            "family_doctor": family_doctor_view(dims, today)}


def _by_area(rows) -> dict[str, dict[str, dict[str, int]]]:
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[r[0]][r["dim"]][r["bucket"]] = r["n"]
    return out


async def township_views(conn: asyncpg.Connection, county: str, today: date) -> tuple[int, list[dict]]:
    """The stream sequence, and every township of `county` (the county's list first, in its order;
    then any other a resident names), counted from the folded residents by the counting contract."""
    seq = await conn.fetchval("SELECT seq FROM stream_state WHERE id = 1")
    counts = _by_area(await conn.fetch(_TOWNSHIP_COUNTS, county))
    listed = list(TOWNSHIPS.get(county, ()))
    names = listed + sorted(t for t in counts if t not in listed)
    return seq, [area_view(t, counts.get(t, {}), today) for t in names]


async def village_views(conn: asyncpg.Connection, county: str, township: str,
                        today: date) -> tuple[int, list[dict]] | None:
    """The stream sequence and the villages of one township with residents (None: a township the
    county neither lists nor has residents in)."""
    seq = await conn.fetchval("SELECT seq FROM stream_state WHERE id = 1")
    counts = _by_area(await conn.fetch(_VILLAGE_COUNTS, county, township))
    if not counts and township not in TOWNSHIPS.get(county, ()):
        return None
    return seq, [area_view(v, counts[v], today) for v in sorted(counts)]


def targets_table(views: dict[str, dict], last_heard: dict[str, datetime], now: datetime) -> list[dict]:
    """The task list, one row per county and the city row (last), each indicator with its official
    target, today's live requirement where the rule is population-based, actual and progress
    against the official target; `last_heard` is when each county platform last posted."""
    counties = load_counties()
    official = official_targets(counties.values())
    live = live_requirements({c: views[c]["residents"]["elderly_60plus"] for c in counties})
    rows = [_target_row(code, county.name_zh, county.name_en, views[code], official[code], live[code],
                        [code], last_heard, now) for code, county in counties.items()]
    rows.append(_target_row(CITY, "濮阳市", "Puyang City", views[CITY], official[CITY], live[CITY],
                            list(counties), last_heard, now))
    return rows


def _target_row(code: str, name_zh: str, name_en: str, view: dict, official: Official, live: dict,
                platforms: list[str], last_heard: dict[str, datetime], now: datetime) -> dict:
    elderly = view["residents"]["elderly_60plus"]
    facilities = view["facilities"]
    beds, nursing = facilities["beds"], facilities["nursing_beds"]
    by_type = facilities["by_type"]
    special = by_type["county_special_care"]
    target, built, task = official.target, official.built, official.task
    heard = {c: last_heard.get(c) for c in platforms}
    live_platforms = sum(1 for c in platforms if platform_live(heard[c], now))
    platform = indicator(target["smart_platform"], live_platforms, "platforms")
    # When the county's platform (the city row: any county's) last posted; a county reader sees the
    # city row too, so it carries no other county's times.
    latest = max((t for t in heard.values() if t is not None), default=None)
    platform["last_heard_at"] = latest.isoformat() if latest else None
    return {
        "county_code": code,
        "name_zh": name_zh,
        "name_en": name_en,
        "elderly_60plus": {"registry": elderly, "task_list": official.elderly},
        "indicators": {
            "beds": indicator(target["beds"], beds, "beds", live_requirement=live["beds"]),
            "beds_per_1000": indicator(BEDS_PER_1000, round(beds * 1000 / elderly, 2) if elderly else None,
                                       "beds per 1000 elders"),
            "nursing_bed_share": indicator(target["nursing_bed_share"], share(nursing, beds), "share"),
            "nursing_bed_share_special_care": indicator(
                target["nursing_bed_share_special_care"], share(special["nursing_beds"], special["beds"]), "share"),
            "occupancy": indicator(None, share(facilities["occupied"], beds), "share"),
            "family_beds": indicator(target["family_beds"], view["family_beds"], "beds",
                                     live_requirement=live["family_beds"]),
            **{key: indicator(target[key], by_type[key.removeprefix("facilities_")]["count"], "facilities",
                              built=built[key], task=task[key]) for key, *_ in COVERAGE},
            "training": indicator(target["training"], view["training"]["trainees"], "person-times",
                                  task=task["training"]),
            "smart_platform": platform,
        },
    }
