"""The synthetic city: a realistic, seeded registry of Puyang's elderly residents (SPEC §4).

Exactly the task list's 60+ population per county as active residents, plus the other
entries a real registry holds (deceased, transferred out, special-hardship residents under
60) up to `total`. Pure and deterministic: one `random.Random(seed)`, no global state, no
I/O except reading the task list (and `write_csv`, whose job is writing). The shares, names,
places and rates it draws from are eldercare/synthetic_tables.py.

Speed matters (700k rows at every fresh start), so everything that does not depend on the
individual row is precomputed once: cumulative weight tables sampled with `bisect`, birth
date strings and the ID check-sum contribution of each region, date and sequence.
"""

from __future__ import annotations

import csv
import os
import random
from bisect import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from itertools import accumulate
from math import cos, exp, hypot, pi, radians, sin, sqrt
from typing import IO, Any

from eldercare import synthetic_tables as tables
from shared.apportion import apportion
from shared.idcard import CHECK_CHARACTERS, WEIGHTS
from shared.regions import COUNTY_AREAS, METRES_PER_DEGREE_LAT, TOWNSHIPS, County, load_counties

__all__ = [
    "AS_OF",
    "CSV_HEADERS",
    "CountyPlan",
    "age_weights",
    "active_60plus_target",
    "generate_residents",
    "plan_population",
    "villages_of",
    "write_csv",
]

AS_OF = date(2026, 1, 1)

# The SPEC's registry: the task list's 666,648 active 60+ within "about 700,000" entries.
# A smaller run keeps this proportion so a 2,000-row test set looks like the real one.
REGISTRY_SIZE = 700_000
CITY_ACTIVE_60PLUS = 666_648

CSV_HEADERS: tuple[str, ...] = (
    "name", "id_number", "phone", "county_code", "township", "village", "address",
    "living_arrangement", "categories", "ability_level", "emergency_contact", "emergency_phone",
    "home_lat", "home_lon", "status", "family_doctor_contract", "family_doctor_signed_on",
)
# Family-doctor contracts (家庭医生签约): 65+ elders are a key group of the contracting policy; the
# share signed varies by county (60-75 %), a little by township, and is lower below 65.
FAMILY_DOCTOR_65PLUS = (0.60, 0.75)
FAMILY_DOCTOR_BELOW_65 = 0.55  # of the county's 65+ share


# ---------------------------------------------------------------- counting -------------


def active_60plus_target(total: int, city_60plus: int) -> int:
    """How many of `total` entries are active residents aged 60+.

    All of the task list's 60+ population once `total` reaches it; below that, the
    full registry's proportion (666,648 of 700,000) of `total`.
    """
    if total >= city_60plus:
        return city_60plus
    return min(city_60plus, round(total * CITY_ACTIVE_60PLUS / REGISTRY_SIZE))


@dataclass(frozen=True, slots=True)
class CountyPlan:
    """How many entries of each kind one county gets."""

    active_60plus: int
    deceased: int
    transferred: int
    hardship_under_60: int

    @property
    def total(self) -> int:
        return self.active_60plus + self.deceased + self.transferred + self.hardship_under_60


def plan_population(total: int, counties: Mapping[str, County]) -> dict[str, CountyPlan]:
    """Per-county counts: the 60+ actives (exact or apportioned) and the extras up to `total`."""
    sixty = {code: c.elderly_60plus for code, c in counties.items()}
    city = sum(sixty.values())
    active_total = active_60plus_target(total, city)
    active = sixty if active_total == city else apportion(active_total, sixty)
    extras = apportion(max(total - active_total, 0), tables.EXTRA_SHARES)
    # Extras follow the county's elderly population: deaths and hardship scale with it.
    per_kind = {kind: apportion(n, sixty) for kind, n in extras.items()}
    return {
        code: CountyPlan(
            active_60plus=active[code],
            deceased=per_kind["deceased"][code],
            transferred=per_kind["transferred"][code],
            hardship_under_60=per_kind["hardship_under_60"][code],
        )
        for code in counties
    }


# ---------------------------------------------------------------- age pyramid ----------

MAX_AGE = 105


@cache
def age_weights() -> dict[int, float]:
    """Single-year weights for ages 60-105 (sum 1): each band's share, declining smoothly within it."""
    weights: dict[int, float] = {}
    bands = tables.AGE_SHARES_60PLUS
    for i, (start, share) in enumerate(bands):
        if i + 1 < len(bands):
            years = range(start, bands[i + 1][0])
            # The within-band decline continues toward the next band's level.
            q = (bands[i + 1][1] / share) ** (1 / len(years))
        else:
            years = range(start, MAX_AGE + 1)
            q = 0.55  # centenarians thin out fast
        raw = [q**j for j in range(len(years))]
        s = sum(raw)
        for age, r in zip(years, raw):
            weights[age] = share * r / s
    total = sum(weights.values())
    return {a: w / total for a, w in weights.items()}


def _cum(weights: Sequence[float]) -> list[float]:
    s = sum(weights)
    cum = [w / s for w in accumulate(weights)]
    cum[-1] = 1.0  # guard against rounding leaving a gap at the top
    return cum


def _systematic_ages(n: int, ages: Sequence[int], cum: Sequence[float], rng: random.Random) -> list[int]:
    # Systematic sampling (one random offset, n evenly spaced points on the CDF): the age
    # pyramid is exact to 1/n even for a 2,000-row test set, yet still random.
    if n <= 0:
        return []
    u = rng.random()
    last = len(ages) - 1
    return [ages[min(bisect(cum, (i + u) / n), last)] for i in range(n)]


# ---------------------------------------------------------------- people -----------------


def _weighted(spec: str) -> tuple[list[str], list[float]]:
    items, weights = [], []
    for token in spec.split():
        key, _, w = token.partition(":")
        items.append(key)
        weights.append(float(w))
    return items, _cum(weights)


def _surnames() -> tuple[list[str], list[float]]:
    names = [t[0] for t in tables.SURNAMES.split()]
    return names, _cum([float(t[1:]) for t in tables.SURNAMES.split()])


def _given(curated: Sequence[str], chars: tuple[str, str]) -> tuple[list[str], list[float]]:
    # Zipf-like weights for the curated list, a thin tail of character combinations.
    names = list(dict.fromkeys(curated))
    weights = [1 / (r + 1) ** 0.6 for r in range(len(names))]
    combos = [a + b for a in chars[0] for b in chars[1] if a != b and a + b not in set(names)]
    # The combinations together get a quarter of the weight: variety without odd names dominating.
    tail = sum(weights) / 3 / len(combos)
    names += combos
    weights += [tail] * len(combos)
    return names, _cum(weights)


# ---------------------------------------------------------------- places -----------------


def _is_street(township: str) -> bool:
    return township.endswith("街道")


@cache
def villages_of(county_code: str, township: str, village_count: int = 0) -> tuple[str, ...]:
    """The villages/communities (村社区) of one township: stable for a township, whatever the seed.

    Street offices have communities (社区); towns and rural townships have villages (村),
    about the county's task-list village count divided over its rural townships, plus a
    community at the township seat.
    """
    # A str seed is hashed with SHA-512 by random.seed, so this is stable across runs.
    rng = random.Random(f"villages:{county_code}:{township}")
    if _is_street(township):
        return tuple(s + "社区" for s in rng.sample(tables.COMMUNITY_STEMS, rng.randint(6, 12)))
    names: list[str] = [township.removesuffix("镇").removesuffix("乡") + "社区"]
    n = min(max(village_count, 8), 80)
    surnames = _surnames()
    seen = set(names)
    while len(names) < n + 1:
        r = rng.random()
        sur = surnames[0][min(bisect(surnames[1], rng.random()), len(surnames[0]) - 1)]
        suffix = rng.choice(tables.VILLAGE_SUFFIXES)
        if r < 0.40:
            stem = sur + suffix
        elif r < 0.75:
            stem = rng.choice(tables.VILLAGE_PREFIXES) + sur + suffix
        elif r < 0.85:
            stem = sur + rng.choice("家官辛河林") + "庄"
        else:
            stem = rng.choice(tables.VILLAGE_WORDS)
        name = stem + "村"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return tuple(names)


# ---------------------------------------------------------------- where homes are ---------
# Every township's seat lies inside its county's disc (shared/regions.COUNTY_AREAS; the first one
# listed, the county seat, near its centre), every village within a few kilometres of its
# township's seat (street communities closer), every home within a few hundred metres of its
# village's centre; a care home's residents live at the care home, by the township seat. Places
# are stable for a name, whatever the seed; the scatter of homes follows the seed.
_CITY_AREA = (35.762, 115.030, 10.0)
VILLAGE_SPREAD_M = {True: 1_500.0, False: 4_000.0}  # street office: communities; else villages
HOME_SIGMA_M = {True: 150.0, False: 110.0}           # a community's blocks; a village's houses


def _offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    return (lat + north_m / METRES_PER_DEGREE_LAT,
            lon + east_m / (METRES_PER_DEGREE_LAT * cos(radians(lat))))


def _inside(county_code: str, east_m: float, north_m: float, share: float = 0.97) -> tuple[float, float]:
    """An offset from the county's centre pulled back inside its disc."""
    r_m = COUNTY_AREAS.get(county_code, _CITY_AREA)[2] * 1000 * share
    d = hypot(east_m, north_m)
    return (east_m, north_m) if d <= r_m else (east_m * r_m / d, north_m * r_m / d)


@cache
def township_seat(county_code: str, township: str, index: int = 0, count: int = 1) -> tuple[float, float]:
    """Where a township's seat is, as metres east and north of its county's centre."""
    rng = random.Random(f"seat:{county_code}:{township}")
    r_m = COUNTY_AREAS.get(county_code, _CITY_AREA)[2] * 1000
    distance = r_m * (0.12 * rng.random() if index == 0 else 0.3 + 0.55 * sqrt(rng.random()))
    angle = 2 * pi * (index / max(count, 1) + 0.25 * rng.random())
    return _inside(county_code, distance * cos(angle), distance * sin(angle), 0.9)


@cache
def village_centre(county_code: str, township: str, village: str, index: int = 0,
                   count: int = 1) -> tuple[float, float]:
    """A village's centre, as metres east and north of its county's centre (the township seat's own
    community, listed first, at the seat)."""
    seat = township_seat(county_code, township, index, count)
    rng = random.Random(f"village:{county_code}:{township}:{village}")
    spread = VILLAGE_SPREAD_M[_is_street(township)] * sqrt(rng.random())
    if village.endswith("社区") and not _is_street(township):
        spread *= 0.15
    angle = 2 * pi * rng.random()
    return _inside(county_code, seat[0] + spread * cos(angle), seat[1] + spread * sin(angle), 0.95)


def _village_counts(county: County, townships: Sequence[str]) -> int:
    rural = sum(1 for t in townships if not _is_street(t))
    return round(county.villages / rural) if rural and county.villages else 0


# ---------------------------------------------------------------- rates by age -----------

AGES = list(range(45, MAX_AGE + 1))


def _interp(anchors: Sequence[tuple[int, Sequence[float]]], age: int) -> list[float]:
    if age <= anchors[0][0]:
        return list(anchors[0][1])
    for (a0, v0), (a1, v1) in zip(anchors, anchors[1:]):
        if age <= a1:
            t = (age - a0) / (a1 - a0)
            return [x + (y - x) * t for x, y in zip(v0, v1)]
    return list(anchors[-1][1])


def _scaled(curve: Any, target: float) -> dict[int, float]:
    # Shape by age from `curve`, level set so the mean over the 60+ pyramid is `target`.
    w = age_weights()
    mean = sum(w[a] * curve(a) for a in w)
    return {a: min(curve(a) * target / mean, 0.6) for a in AGES}


@cache
def _rates() -> dict[str, dict[int, float]]:
    return {
        # Extreme poverty ~1% (centralised support ~30% of it), minimum allowance ~5%,
        # low income ~3%: mutually exclusive tiers of the same means test.
        "extreme": _scaled(lambda a: exp(0.02 * (a - 60)), 0.010),
        "minimum": _scaled(lambda a: exp(0.01 * (a - 60)), 0.050),
        "low": _scaled(lambda a: 1.0, 0.030),
        "disability": _scaled(lambda a: exp(0.04 * (a - 60)), 0.020),
        # Diagnosed (not true) dementia prevalence: doubles every ~5 years of age.
        "dementia": _scaled(lambda a: exp(0.139 * (max(a, 60) - 60)), 0.015),
        # Parents of a deceased or disabled only child: the one-child policy's parents
        # were born ~1940-1966, so the category is rare past ~86.
        "fps": _scaled(lambda a: 1.0 if a <= 80 else (0.4 if a <= 86 else 0.0), 0.005),
    }


# ---------------------------------------------------------------- the generator ----------


def _birth_window(as_of: date, age: int) -> tuple[int, int]:
    """Ordinals of the earliest and latest birth dates giving exactly `age` on `as_of`."""

    def years_before(n: int) -> date:
        try:
            return as_of.replace(year=as_of.year - n)
        except ValueError:  # 29 February in a non-leap year: the birthday is the 28th
            return as_of.replace(year=as_of.year - n, day=28)

    return (years_before(age + 1) + timedelta(days=1)).toordinal(), years_before(age).toordinal()


def _id_partial(digits: str, offset: int) -> int:
    # GB 11643 §5.5 weighted sum of a slice of the first 17 digits, so the hot loop adds
    # three cached partial sums instead of recomputing all 17 products.
    return sum(int(ch) * WEIGHTS[offset + i] for i, ch in enumerate(digits))


def _birth_regions_of(code: str, county: County, units: Mapping[str, County]) -> tuple[str, ...]:
    # A zone added by data (not in tables.ZONE_BIRTH_REGIONS) borrows the codes of the real counties.
    if county.kind != "zone":
        return (code,)
    return tuple(c for c, u in units.items() if u.kind != "zone") or (code,)


def _as_mapping(counties: Mapping[str, County] | Iterable[County] | None) -> dict[str, County]:
    if counties is None:
        return load_counties()
    if isinstance(counties, Mapping):
        return dict(counties)
    return {c.code: c for c in counties}


def generate_residents(
    total: int = REGISTRY_SIZE,
    seed: int = 42,
    counties: Mapping[str, County] | Iterable[County] | None = None,
    as_of: date = AS_OF,
) -> Iterator[dict[str, Any]]:
    """Yield `total` resident rows (SPEC §2 fields plus `status`), county by county.

    Active residents aged 60+ on `as_of` are exactly each county's task-list count when
    `total` reaches the city sum, and an apportioned share otherwise. The same seed and
    total give identical rows.
    """
    if total < 0:
        raise ValueError("total must not be negative")
    units = _as_mapping(counties)
    plan = plan_population(total, units)
    rng = random.Random(seed)
    rnd = rng.random
    gauss = random.Random(f"homes:{seed}").gauss
    _bisect, _int = bisect, int  # locals: the loop below runs 700k times

    # ---- tables shared by every row; per-age tables are lists indexed by age
    sur_names, sur_cum = _surnames()
    male_names, male_cum = _given(tables.MALE_GIVEN, tables.MALE_CHARS)
    female_names, female_cum = _given(tables.FEMALE_GIVEN, tables.FEMALE_CHARS)
    young = tables.YOUNG_GIVEN
    n_young = len(young)
    henan_codes, henan_cum = _weighted(tables.HENAN_REGIONS)
    other_codes, other_cum = _weighted(tables.OTHER_REGIONS)
    # One draw picks prefix and subscriber number together; str() of the int is the phone.
    prefix_base = [int(p) * 100_000_000 for p in tables.MOBILE_PREFIXES]
    phone_span = len(prefix_base) * 100_000_000
    rates = _rates()

    def by_age(values: Mapping[int, Any]) -> list[Any]:
        return [values.get(a) for a in range(MAX_AGE + 1)]

    p_extreme, p_minimum, p_low = by_age(rates["extreme"]), by_age(rates["minimum"]), by_age(rates["low"])
    p_disability, p_dementia = by_age(rates["disability"]), by_age(rates["dementia"])
    p_fps = by_age(rates["fps"])
    ability_cum = by_age({a: _cum(_interp(tables.ABILITY, a)) for a in AGES})
    living_cum = by_age({a: _cum(_interp(tables.LIVING, a)) for a in AGES})
    p_male = by_age({a: _interp(tables.MALE, a)[0] for a in AGES})
    p_phone = by_age({a: _interp(tables.PHONE, a)[0] for a in AGES})
    window = by_age({a: _birth_window(as_of, a) for a in AGES})
    living_codes = tables.LIVING_CODES
    # House numbers: 村民小组 and house in villages, building/unit/room in communities.
    village_detail = [f"{g}组{h}号" for g in range(1, 9) for h in range(1, 81)]
    community_detail = [
        f"{b}号楼{u}单元{f}0{r}室"
        for b in range(1, 31)
        for u in range(1, 5)
        for f in range(1, 7)
        for r in range(1, 5)
    ]
    n_vd, n_cd = len(village_detail), len(community_detail)

    region_sum: dict[str, int] = {}
    date_cache: dict[int, tuple[str, int]] = {}
    seq_text = [f"{s:03d}" for s in range(1000)]
    seq_sum = [_id_partial(t, 14) for t in seq_text]
    seen: set[str] = set()

    # Age distributions per kind of entry, as cumulative tables over `AGES`.
    base = age_weights()
    active_cum = _cum([base.get(a, 0.0) for a in AGES])
    # The dead skew old (mortality roughly doubles every 8 years past 60); movers skew young.
    deceased_cum = _cum([base.get(a, 0.0) * exp(0.09 * (a - 60)) for a in AGES])
    transferred_cum = _cum([base.get(a, 0.0) * exp(-0.03 * (a - 60)) for a in AGES])
    under60_cum = _cum([(1 + 0.05 * (a - 45)) if a < 60 else 0.0 for a in AGES])
    statuses = ("active", "deceased", "transferred", "active")  # by kind below
    # Contracts draw from their own generator, so every other field is what it was without them.
    doctor_rnd = random.Random(f"family-doctor:{seed}").random

    for code, county in units.items():
        p = plan[code]
        if p.total == 0:
            continue
        townships = TOWNSHIPS.get(code) or ["城关街道", "城郊乡"]
        per_township = _village_counts(county, townships)
        # (township, its villages, address prefix, address of its care home)
        places = [
            (
                t,
                villages_of(code, t, per_township),
                county.name_zh + t,
                county.name_zh + t + ("养老服务中心" if _is_street(t) else "敬老院"),
            )
            for t in townships
        ]
        c_lat, c_lon = COUNTY_AREAS.get(code, _CITY_AREA)[:2]
        to_lon = METRES_PER_DEGREE_LAT * cos(radians(c_lat))
        # (township index, village) -> (centre east, north, scatter sigma); the care home by the seat.
        n_places = len(places)
        centres = {(i, v): (*village_centre(code, t, v, i, n_places), HOME_SIGMA_M[_is_street(t)])
                   for i, (t, vs, _, _) in enumerate(places) for v in vs}
        care_homes = [township_seat(code, t, i, n_places) for i, (t, _, _, _) in enumerate(places)]
        n_town = len(places)
        own_regions = tables.ZONE_BIRTH_REGIONS.get(code) or _birth_regions_of(code, county, units)
        n_own = len(own_regions)
        lo65, hi65 = FAMILY_DOCTOR_65PLUS
        county_rate = lo65 + (hi65 - lo65) * random.Random(f"family-doctor:{code}").random()
        township_rate = {t: min(0.95, max(0.0, county_rate + 0.1 * (random.Random(f"family-doctor:{code}:{t}")
                                                                   .random() - 0.5))) for t in townships}

        # kind: 0 active 60+, 1 deceased, 2 transferred, 3 hardship under 60
        people: list[tuple[int, int]] = []
        for kind, n, cum in (
            (0, p.active_60plus, active_cum),
            (1, p.deceased, deceased_cum),
            (2, p.transferred, transferred_cum),
            (3, p.hardship_under_60, under60_cum),
        ):
            people.extend((age, kind) for age in _systematic_ages(n, AGES, cum, rng))
        rng.shuffle(people)

        for age, kind in people:
            # ---- identity
            male = rnd() < (p_male[age] + 0.08 if kind == 1 else p_male[age])  # more men among the dead
            surname = sur_names[_bisect(sur_cum, rnd())]
            if male:
                name = surname + male_names[_bisect(male_cum, rnd())]
            else:
                name = surname + female_names[_bisect(female_cum, rnd())]
            r = rnd()
            if r < 0.80:
                region = own_regions[_int(r * 1.25 * n_own)]  # r/0.8 is uniform again
            elif r < 0.95:
                region = henan_codes[_bisect(henan_cum, rnd())]
            else:
                region = other_codes[_bisect(other_cum, rnd())]
            rs = region_sum.get(region)
            if rs is None:
                rs = region_sum[region] = _id_partial(region, 0)
            lo, hi = window[age]
            span = hi - lo + 1
            while True:  # unique city-wide (SPEC §2: one person is registered once)
                ordinal = lo + _int(rnd() * span)
                entry = date_cache.get(ordinal)
                if entry is None:
                    ymd = date.fromordinal(ordinal).strftime("%Y%m%d")
                    entry = date_cache[ordinal] = (ymd, _id_partial(ymd, 6))
                seq = 2 * _int(rnd() * 500) + male  # GB 11643 §5.4: odd sequence = man
                first17 = region + entry[0] + seq_text[seq]
                if first17 not in seen:
                    seen.add(first17)
                    break
            id_number = first17 + CHECK_CHARACTERS[(rs + entry[1] + seq_sum[seq]) % 11]

            # ---- categories (in the SPEC's order)
            categories: list[str] = []
            if kind == 3:
                # Under 60 only hardship puts someone on the elderly registry.
                h = rnd()
                if h < 0.30:
                    categories.append(
                        "extreme_poverty_centralised" if rnd() < 0.3 else "extreme_poverty_dispersed"
                    )
                else:
                    if rnd() < 0.35:
                        categories.append("minimum_allowance")
                    # Bereaved one-child parents qualify from 49 (the policy's age line).
                    fps = h >= 0.85 and age >= 49
                    categories.append("family_planning_special" if fps else "severe_disability")
            else:
                e = rnd()
                pe = p_extreme[age]
                if e < pe:
                    categories.append(
                        "extreme_poverty_centralised" if rnd() < 0.3 else "extreme_poverty_dispersed"
                    )
                elif e < pe + p_minimum[age]:
                    categories.append("minimum_allowance")
                elif e < pe + p_minimum[age] + p_low[age]:
                    categories.append("low_income")
                if rnd() < p_disability[age]:
                    categories.append("severe_disability")
                if rnd() < p_dementia[age]:
                    categories.append("dementia")
                if rnd() < p_fps[age]:
                    categories.append("family_planning_special")

            # ---- ability (GB/T 42195-2022)
            level = _bisect(ability_cum[age], rnd())
            first_category = categories[0] if categories else ""
            if first_category:
                if "severe_disability" in categories:
                    level = max(level, 1 + _int(rnd() * 3))
                if "dementia" in categories:
                    # A diagnosed dementia makes the assessed level one worse.
                    level = min(max(level, 1) + 1, 4)

            # ---- living arrangement
            if first_category == "extreme_poverty_centralised":
                living = "institution"  # centralised support means living in a care home
            elif first_category == "extreme_poverty_dispersed":
                living = "alone" if rnd() < 0.7 else "empty_nest"  # no supporting children
            else:
                living = living_codes[_bisect(living_cum[age], rnd())]
                if level >= 3 and living == "alone":
                    living = "with_family"  # severe loss of ability rarely lives alone

            # ---- where
            t_index = _int(rnd() * n_town)
            township, villages, prefix, care_home = places[t_index]
            village = villages[_int(rnd() * len(villages))]
            # The home's scatter draws on its own generator: the rows' other values stay as they were.
            if living == "institution":
                east, north = care_homes[t_index]
                sigma = 15.0
            else:
                east, north, sigma = centres[t_index, village]
            east, north = _inside(code, east + min(max(gauss(0.0, sigma), -3 * sigma), 3 * sigma),
                                  north + min(max(gauss(0.0, sigma), -3 * sigma), 3 * sigma))
            home_lat = round(c_lat + north / METRES_PER_DEGREE_LAT, 6)
            home_lon = round(c_lon + east / to_lon, 6)
            if living == "institution":
                address = care_home
            elif village[-1] == "区":  # 社区
                address = prefix + village + community_detail[_int(rnd() * n_cd)]
            else:
                address = prefix + village + village_detail[_int(rnd() * n_vd)]

            # ---- contacts
            if rnd() < p_phone[age]:
                x = _int(rnd() * phone_span)
                phone = str(prefix_base[x // 100_000_000] + x % 100_000_000)
            else:
                phone = None
            poor = first_category.startswith("extreme")
            if rnd() < (0.6 if poor else 0.92):
                # Usually a child, who carries the father's surname; the extremely poor
                # have none, so theirs is a neighbour or village cadre.
                if male and not poor and rnd() < 0.85:
                    contact = surname + young[_int(rnd() * n_young)]
                else:
                    contact = sur_names[_bisect(sur_cum, rnd())] + young[_int(rnd() * n_young)]
                if rnd() < 0.97:
                    x = _int(rnd() * phone_span)
                    contact_phone = str(prefix_base[x // 100_000_000] + x % 100_000_000)
                else:
                    contact_phone = None
            else:
                contact = contact_phone = None

            # ---- family doctor (the active only: a contract ends with death or a move away)
            contract, signed_on = False, None
            if kind in (0, 3):
                rate = township_rate[township] * (1.0 if age >= 65 else FAMILY_DOCTOR_BELOW_65)
                if doctor_rnd() < rate:
                    contract = True
                    if doctor_rnd() < 0.95:  # the rest signed on paper, the date not recorded
                        signed_on = as_of - timedelta(days=1 + _int(doctor_rnd() * 365))

            yield {
                "name": name,
                "id_number": id_number,
                "phone": phone,
                "county_code": code,
                "township": township,
                "village": village,
                "address": address,
                "living_arrangement": living,
                "categories": categories,
                "ability_level": level,
                "emergency_contact": contact,
                "emergency_phone": contact_phone,
                "home_lat": home_lat,
                "home_lon": home_lon,
                "status": statuses[kind],
                "family_doctor_contract": contract,
                "family_doctor_signed_on": signed_on,
            }


def write_csv(rows: Iterable[Mapping[str, Any]], path_or_file: str | os.PathLike[str] | IO[str]) -> int:
    """Write rows as the county import template (English headers, `;`-joined categories, 是 for a
    family-doctor contract).

    Returns the number of rows written.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "w", newline="", encoding="utf-8") as f:
            return write_csv(rows, f)
    writer = csv.writer(path_or_file, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    n = 0
    for row in rows:
        values = []
        for h in CSV_HEADERS:
            v = row.get(h)
            if h == "categories" and v is not None and not isinstance(v, str):
                v = ";".join(v)
            elif h == "family_doctor_contract" and isinstance(v, bool):
                v = "是" if v else ""  # empty: no contract recorded (as a clerk leaves it)
            values.append("" if v is None else v)
        writer.writerow(values)
        n += 1
    return n
