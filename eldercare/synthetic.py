"""The synthetic city: a realistic, seeded registry of Puyang's elderly residents (SPEC §4).

Exactly the task list's 60+ population per county as active residents, plus the other
entries a real registry holds (deceased, transferred out, special-hardship residents under
60) up to `total`. Pure and deterministic: one `random.Random(seed)`, no global state, no
I/O except reading the task list (and `write_csv`, whose job is writing).

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
from math import exp
from typing import IO, Any

from shared.apportion import apportion
from shared.idcard import CHECK_CHARACTERS, WEIGHTS
from shared.regions import TOWNSHIPS, County, load_counties

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
    "status",
)

# How the non-60+-active entries split. Deaths dominate a registry kept for several years;
# transfers out of the city are rarer; hardship residents under 60 (severely disabled,
# extreme poverty, bereaved family-planning parents) are registered for subsidies.
_EXTRA_SHARES = {"deceased": 55, "transferred": 15, "hardship_under_60": 30}


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
    extras = apportion(max(total - active_total, 0), _EXTRA_SHARES)
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

# Share of the 60+ population by five-year band, % (Henan, 7th census 2020: 65+ is about
# three quarters of 60+; SPEC §4 asks 74%). 100+ at a few hundred per million elders:
# about 200 in the full city, a handful to a few dozen per county.
_BANDS: tuple[tuple[int, float], ...] = (
    (60, 26.0), (65, 24.0), (70, 20.0), (75, 13.5), (80, 9.0), (85, 5.0), (90, 2.0),
    (95, 0.47), (100, 0.03),
)
MAX_AGE = 105


@cache
def age_weights() -> dict[int, float]:
    """Single-year weights for ages 60-105 (sum 1): each band's share, declining smoothly within it."""
    weights: dict[int, float] = {}
    for i, (start, share) in enumerate(_BANDS):
        if i + 1 < len(_BANDS):
            years = range(start, _BANDS[i + 1][0])
            # The within-band decline continues toward the next band's level.
            q = (_BANDS[i + 1][1] / share) ** (1 / len(years))
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

# Surnames with rough frequencies (% of population), leaning to northern Henan where 王, 李,
# 张 and 刘 are commoner than nationally; 訾, 仝, 晁 are local to Puyang.
_SURNAMES = (
    "王9.5 李8.6 张8.4 刘5.6 陈3.3 杨3.0 赵2.7 郭2.3 孙1.9 高1.8 马1.8 宋1.4 周1.4 徐1.4 朱1.3 "
    "胡1.3 韩1.2 吴1.0 郑1.0 梁1.0 黄0.9 何0.8 程0.8 冯0.9 于0.9 董0.9 曹0.9 许0.9 魏0.8 田0.7 "
    "任0.7 贾0.7 袁0.7 崔0.6 吕0.6 苏0.6 杜0.6 丁0.6 谢0.5 罗0.5 郝0.5 武0.5 孟0.5 白0.5 石0.5 "
    "史0.5 侯0.5 姚0.5 姜0.5 范0.5 彭0.4 邓0.4 蔡0.5 薛0.5 卢0.5 常0.4 牛0.4 孔0.4 康0.4 秦0.4 "
    "毛0.4 潘0.4 夏0.4 段0.4 阎0.3 闫0.3 沈0.3 申0.3 乔0.3 贺0.3 岳0.3 焦0.3 付0.3 尹0.3 邵0.3 "
    "雷0.3 方0.3 金0.2 齐0.2 邢0.2 葛0.2 路0.2 苗0.2 靳0.2 翟0.2 聂0.2 代0.2 文0.2 蒋0.3 唐0.3 "
    "戴0.2 钱0.2 汤0.2 万0.2 余0.2 江0.2 陆0.2 邹0.2 熊0.2 訾0.05 仝0.05 晁0.05 栗0.1 裴0.1 "
    "霍0.1 鲁0.1 司0.1 庞0.1 柴0.1 温0.1 穆0.1 房0.1 屈0.1 左0.1 宁0.1 郜0.05 桑0.05 娄0.05 "
    "商0.05 褚0.05 单0.05 井0.03 冉0.03"
)

# Given names typical of people born 1920-1966 (the revolution-era 建国, 援朝, 跃进 …),
# most common first; combinations of common characters widen the pool.
_MALE_GIVEN = (
    "建国 国庆 建华 建军 国强 志强 德明 长海 振华 保国 春生 秋生 铁柱 金锁 满仓 有才 富贵 长林 "
    "庆祥 文华 卫东 红旗 志刚 明亮 国栋 玉林 玉山 玉田 广田 广林 学文 学礼 德胜 德福 德山 新民 "
    "新华 跃进 胜利 解放 援朝 抗美 和平 建设 宝山 宝林 书林 书田 庆林 庆丰 丰收 中华 振国 安民 "
    "永利 永福 永祥 长江 长顺 来福 来顺 进财 全福 金山 金海 银山 海军 天成 天祥 启明 俊峰 殿臣 "
    "殿元 凤山 凤岐 照林 占山 占魁 瑞林 景山 文明 文彬 守仁 守义 守信 怀德 怀礼 树森 树林 连成 "
    "连生 万里 万福 兴旺 培元 贵生 喜来 锁柱 留柱 留根 拴柱 军 强 明 华 林 斌 勇 刚 平 忠 良 成 "
    "民 福 顺 旺 山"
).split()
_FEMALE_GIVEN = (
    "桂兰 秀英 玉兰 秀兰 桂英 凤英 淑珍 玉珍 秀珍 桂芝 兰英 翠兰 凤兰 玉梅 素芳 淑兰 秀荣 春梅 "
    "爱莲 月娥 金花 素珍 改云 巧云 爱荣 玉英 桂荣 秀云 秀芝 凤琴 玉芳 桂香 春花 秋菊 冬梅 雪梅 "
    "红梅 丽华 淑华 秀芳 美兰 玉凤 玉荣 彩霞 彩云 爱华 爱英 爱琴 小花 小梅 翠英 翠花 兰芝 荷花 "
    "菊花 香兰 素英 素云 素梅 俊英 凤霞 建英 国英 国华 改英 改花 改兰 粉英 金凤 银凤 秀梅 玉莲 "
    "月英 月兰 麦香 喜梅 花荣 书兰 书芳 俊芳 焕英 英 兰 芳 梅 霞 珍 琴 萍 荣 云"
).split()
_MALE_CHARS = ("建国志德长振保春金有庆文学永广天明玉树守怀殿占连万兴", "国华明军林山海生成才贵祥福民强忠良喜全堂田臣元魁")
_FEMALE_CHARS = ("桂秀玉凤淑兰翠素春爱月金巧改荣彩香俊粉书", "兰英珍芝梅芳荣花云琴娥霞莲香枝凤菊萍")
# Their children, born 1960-2000, are the usual emergency contacts.
_YOUNG_GIVEN = (
    "伟 磊 军 勇 强 涛 鹏 杰 超 斌 亮 刚 浩 鑫 建伟 海涛 志勇 晓东 卫国 红军 俊杰 振宇 国伟 立新 "
    "向阳 东升 文杰 明辉 建涛 永强 丽 娟 静 敏 艳 红 霞 燕 芳 丽娟 红霞 晓燕 艳丽 海燕 玉洁 丽萍 "
    "秀丽 春燕 雪 婷 慧 晓丽 翠霞 莉 萍 艳红 红梅 丹"
).split()

# 11-digit mobile prefixes of the three carriers (MIIT numbering plan).
_MOBILE_PREFIXES = (
    "134 135 136 137 138 139 150 151 152 157 158 159 182 183 187 188 147 178 198 "
    "130 131 132 155 156 185 186 166 176 133 153 180 181 189 177 173 199"
).split()

# Where people were first registered. Functional zones are not ID-issuing regions: their
# residents were registered under the county or district the land belonged to.
_ZONE_BIRTH_REGIONS: dict[str, tuple[str, ...]] = {
    "410971": ("410902", "410928"),
    "410972": ("410928", "410902"),
    "410973": ("410902", "410928", "410922", "410923", "410927"),
}
# Elsewhere in Henan, the neighbours (Anyang's 内黄/滑县, Xinxiang's 长垣) most often.
_HENAN_REGIONS = (
    "410527:6 410526:6 410522:3 410523:2 410500:2 410728:3 410727:2 410700:2 410100:3 410102:1 "
    "410105:1 410200:1 410221:1 410300:1 410400:1 410600:1 410800:1 411000:1 411100:1 411300:1 "
    "411400:1 411421:1 411500:1 411600:1 411700:1"
)
# Other provinces: across-the-river Shandong (聊城莘县/阳谷, 菏泽鄄城/东明) and Hebei (邯郸大名/魏县)
# first, then the cities elders commonly came from or worked in.
_OTHER_REGIONS = (
    "371522:5 371521:4 371526:2 371500:2 371726:3 371728:3 371700:2 370100:2 130425:4 130434:3 "
    "130400:3 130100:1 340100:1 320300:1 140100:1 140400:1 610100:1 230100:1 210100:1 420100:1 "
    "110105:1 120101:1 620100:1 650100:1"
)


def _weighted(spec: str) -> tuple[list[str], list[float]]:
    items, weights = [], []
    for token in spec.split():
        key, _, w = token.partition(":")
        items.append(key)
        weights.append(float(w))
    return items, _cum(weights)


def _surnames() -> tuple[list[str], list[float]]:
    names = [t[0] for t in _SURNAMES.split()]
    return names, _cum([float(t[1:]) for t in _SURNAMES.split()])


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

_VILLAGE_SUFFIXES = "庄庄庄庄楼楼寨寨营屯集店庙岗堤湾固桥园坡寺口堂"
_VILLAGE_PREFIXES = "前后东西南北大小新老"
_VILLAGE_WORDS = (
    "辛庄 高寺 红庙 三里店 双碾 枣林 柳园 白堽 马庄桥 沙窝 油坊 铁炉 苏堤 枣园 孟楼 土城 丁寨 安乐 "
    "黄河 金堤 五星 八里庄 十字坡 后坡 杏园 槐树庄"
).split()
_COMMUNITY_STEMS = (
    "建设 人民 胜利 中原 长庆 绿城 昆吾 开州 帝丘 龙城 华龙 春晖 阳光 和谐 幸福 锦华 颐和 铁路 "
    "油田 石化 振兴 文化 朝阳 金堤 东关 西关 南关 北关 新华 育才 安居 龙湖 卫都 京开 紫荆 世纪 "
    "民生 迎宾 光明 濮水 澶州 顺河 天然 丰华 盛世 惠民 健康 花园"
).split()


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
        return tuple(s + "社区" for s in rng.sample(_COMMUNITY_STEMS, rng.randint(6, 12)))
    names: list[str] = [township.removesuffix("镇").removesuffix("乡") + "社区"]
    n = min(max(village_count, 8), 80)
    surnames = _surnames()
    seen = set(names)
    while len(names) < n + 1:
        r = rng.random()
        sur = surnames[0][min(bisect(surnames[1], rng.random()), len(surnames[0]) - 1)]
        suffix = rng.choice(_VILLAGE_SUFFIXES)
        if r < 0.40:
            stem = sur + suffix
        elif r < 0.75:
            stem = rng.choice(_VILLAGE_PREFIXES) + sur + suffix
        elif r < 0.85:
            stem = sur + rng.choice("家官辛河林") + "庄"
        else:
            stem = rng.choice(_VILLAGE_WORDS)
        name = stem + "村"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return tuple(names)


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


# GB/T 42195-2022 levels 0-4. Mostly intact or mild; disability climbs steeply past 80
# (China's 4th survey of the urban and rural elderly, 2015: about one in six partly or
# wholly disabled, here levels 2-4).
_ABILITY = ((60, (0.82, 0.13, 0.03, 0.015, 0.005)), (70, (0.70, 0.21, 0.05, 0.028, 0.012)),
            (80, (0.45, 0.33, 0.12, 0.065, 0.035)), (90, (0.22, 0.35, 0.20, 0.13, 0.10)),
            (100, (0.10, 0.30, 0.25, 0.18, 0.17)))
# alone / empty-nest / with family / institution: empty-nest couples dominate the young-old,
# widowhood then moves people to living alone and, past 90, in with children.
_LIVING = ((60, (0.07, 0.53, 0.39, 0.008)), (70, (0.11, 0.49, 0.385, 0.012)),
           (80, (0.19, 0.33, 0.45, 0.03)), (90, (0.18, 0.14, 0.62, 0.06)),
           (100, (0.12, 0.05, 0.75, 0.08)))
_LIVING_CODES = ("alone", "empty_nest", "with_family", "institution")
# Share of men: about equal at 60, then falling as women outlive men (about 47% of all 60+).
_MALE = ((60, (0.505,)), (70, (0.485,)), (80, (0.44,)), (90, (0.33,)), (100, (0.20,)))
# Phone of their own: most young-old carry a mobile, the oldest often do not.
_PHONE = ((60, (0.85,)), (70, (0.75,)), (80, (0.52,)), (90, (0.35,)), (100, (0.25,)))


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
    # A zone added by data (not in _ZONE_BIRTH_REGIONS) borrows the codes of the real counties.
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
    _bisect, _int = bisect, int  # locals: the loop below runs 700k times

    # ---- tables shared by every row; per-age tables are lists indexed by age
    sur_names, sur_cum = _surnames()
    male_names, male_cum = _given(_MALE_GIVEN, _MALE_CHARS)
    female_names, female_cum = _given(_FEMALE_GIVEN, _FEMALE_CHARS)
    young = _YOUNG_GIVEN
    n_young = len(young)
    henan_codes, henan_cum = _weighted(_HENAN_REGIONS)
    other_codes, other_cum = _weighted(_OTHER_REGIONS)
    # One draw picks prefix and subscriber number together; str() of the int is the phone.
    prefix_base = [int(p) * 100_000_000 for p in _MOBILE_PREFIXES]
    phone_span = len(prefix_base) * 100_000_000
    rates = _rates()

    def by_age(values: Mapping[int, Any]) -> list[Any]:
        return [values.get(a) for a in range(MAX_AGE + 1)]

    p_extreme, p_minimum, p_low = by_age(rates["extreme"]), by_age(rates["minimum"]), by_age(rates["low"])
    p_disability, p_dementia = by_age(rates["disability"]), by_age(rates["dementia"])
    p_fps = by_age(rates["fps"])
    ability_cum = by_age({a: _cum(_interp(_ABILITY, a)) for a in AGES})
    living_cum = by_age({a: _cum(_interp(_LIVING, a)) for a in AGES})
    p_male = by_age({a: _interp(_MALE, a)[0] for a in AGES})
    p_phone = by_age({a: _interp(_PHONE, a)[0] for a in AGES})
    window = by_age({a: _birth_window(as_of, a) for a in AGES})
    living_codes = _LIVING_CODES
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
        n_town = len(places)
        own_regions = _ZONE_BIRTH_REGIONS.get(code) or _birth_regions_of(code, county, units)
        n_own = len(own_regions)

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
            township, villages, prefix, care_home = places[_int(rnd() * n_town)]
            village = villages[_int(rnd() * len(villages))]
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
                "status": statuses[kind],
            }


def write_csv(rows: Iterable[Mapping[str, Any]], path_or_file: str | os.PathLike[str] | IO[str]) -> int:
    """Write rows as the county import template (English headers, `;`-joined categories).

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
            values.append("" if v is None else v)
        writer.writerow(values)
        n += 1
    return n
