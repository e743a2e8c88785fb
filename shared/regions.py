"""Administrative regions: GB/T 2260 province codes, the city's county-level units and townships.

Pure data and lookups. The only I/O is reading the task-list CSV that ships beside this
module (`shared/reference/`), so counties are data, not code (SPEC §2 "Administrative units").
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

__all__ = [
    "PROVINCE_CODES",
    "TASK_LIST_PATH",
    "TOWNSHIPS",
    "County",
    "is_known_region",
    "load_counties",
]

TASK_LIST_PATH = Path(__file__).resolve().parent / "reference" / "puyang_task_list_2022.csv"

# GB/T 2260 province-level divisions (first two digits of every region code). 81/82 also
# head the numbers on Hong Kong and Macau residents' residence permits (810000/820000);
# Taiwan residents' permits use 830000, which is not a GB/T 2260 province and is refused.
PROVINCE_CODES: dict[str, str] = {
    "11": "北京市",
    "12": "天津市",
    "13": "河北省",
    "14": "山西省",
    "15": "内蒙古自治区",
    "21": "辽宁省",
    "22": "吉林省",
    "23": "黑龙江省",
    "31": "上海市",
    "32": "江苏省",
    "33": "浙江省",
    "34": "安徽省",
    "35": "福建省",
    "36": "江西省",
    "37": "山东省",
    "41": "河南省",
    "42": "湖北省",
    "43": "湖南省",
    "44": "广东省",
    "45": "广西壮族自治区",
    "46": "海南省",
    "50": "重庆市",
    "51": "四川省",
    "52": "贵州省",
    "53": "云南省",
    "54": "西藏自治区",
    "61": "陕西省",
    "62": "甘肃省",
    "63": "青海省",
    "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
    "71": "台湾省",
    "81": "香港特别行政区",
    "82": "澳门特别行政区",
}


def is_known_region(code6: str) -> bool:
    """True when `code6` is six digits whose first two are a GB/T 2260 province code.

    SPEC §2: the ID's region code is where the person was first registered, anywhere in
    China, and may be a code since abolished or re-numbered (e.g. pre-1983 Anyang codes
    for today's Puyang). So only the province is checked: a full table of every county
    code ever issued would reject real, old ID numbers.
    """
    return (
        isinstance(code6, str)
        and len(code6) == 6
        and code6.isascii()
        and code6.isdigit()
        and code6[:2] in PROVINCE_CODES
    )


@dataclass(frozen=True, slots=True)
class County:
    """One county-level unit and its row of the city's 2022 task list (targets are counts)."""

    code: str
    name_zh: str
    name_en: str
    kind: str  # county / district / zone
    elderly_60plus: int
    county_special_care_target: int
    county_special_care_built: int
    county_special_care_task_2022: int
    street_center_target: int
    street_center_built: int
    street_center_task_2022: int
    daycare_center_target: int
    daycare_center_built: int
    daycare_center_task_2022: int
    township_homes_existing: int
    township_homes_task_2022: int
    villages: int
    happiness_homes_built: int
    training_task_2022: int
    smart_platform_target: int


# CSV headers that differ from the dataclass field names; every other column maps 1:1.
_RENAMED = {"county_code": "code", "county_name_zh": "name_zh", "county_name_en": "name_en"}
_TEXT_FIELDS = frozenset({"code", "name_zh", "name_en", "kind"})
_INT_FIELDS = tuple(f.name for f in fields(County) if f.name not in _TEXT_FIELDS)


@cache
def _read_task_list(path: Path) -> tuple[County, ...]:
    # Cached as an immutable tuple so callers of load_counties() can't corrupt the cache.
    counties: list[County] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        for raw in csv.DictReader(f):
            row = {_RENAMED.get(k.strip(), k.strip()): (v or "").strip() for k, v in raw.items() if k}
            # The published table's city row is only the sum of the others: not a county.
            if row.get("kind") == "city":
                continue
            values: dict[str, object] = {name: row[name] for name in _TEXT_FIELDS}
            for name in _INT_FIELDS:
                values[name] = int(row[name] or 0)
            counties.append(County(**values))  # type: ignore[arg-type]
    return tuple(counties)


def load_counties(path: str | Path | None = None) -> dict[str, County]:
    """The task list's county-level units by code, in the file's order (cached per path)."""
    resolved = Path(path).resolve() if path is not None else TASK_LIST_PATH
    return {c.code: c for c in _read_task_list(resolved)}


# 乡镇街道 per county-level unit. The five counties and Hualong District list their real
# townships (nine, twenty … as the task list's township-home counts imply: one home per
# rural township). The Development Zone lists the towns and street offices it administers;
# the Industrial Park and Demonstration Zone names are plausible placeholders only.
TOWNSHIPS: dict[str, list[str]] = {
    "410928": [  # 濮阳县: 12 镇 8 乡
        "城关镇", "柳屯镇", "文留镇", "庆祖镇", "八公桥镇", "徐镇镇", "户部寨镇", "鲁河镇",
        "子岸镇", "胡状镇", "王称堌镇", "梁庄镇", "清河头乡", "梨园乡", "白堽乡", "五星乡",
        "渠村乡", "海通乡", "习城乡", "郎中乡",
    ],
    "410922": [  # 清丰县
        "城关镇", "马庄桥镇", "瓦屋头镇", "仙庄镇", "柳格镇", "韩村镇", "六塔乡", "阳邵乡",
        "古城乡", "纸房乡", "高堡乡", "大流乡", "巩营乡", "双庙乡", "马村乡", "大屯乡",
        "固城乡",
    ],
    "410923": [  # 南乐县
        "城关镇", "韩张镇", "元村镇", "福堪镇", "千口镇", "谷金楼乡", "杨村乡", "张果屯乡",
        "梁村乡", "近德固乡", "寺庄乡", "西邵乡",
    ],
    "410926": [  # 范县
        "樱桃园镇", "濮城镇", "龙王庄镇", "王楼镇", "辛庄镇", "陈庄镇", "高码头镇", "杨集乡",
        "白衣阁乡", "颜村铺乡", "陆集乡", "张庄乡",
    ],
    "410927": [  # 台前县
        "城关镇", "侯庙镇", "孙口镇", "打渔陈镇", "吴坝镇", "马楼镇", "夹河乡", "清水河乡",
        "后方乡",
    ],
    "410902": [  # 华龙区: nine street offices (the task list's nine street centres), 1 镇 1 乡
        "中原路街道", "胜利路街道", "建设路街道", "人民路街道", "大庆路街道", "黄河路街道",
        "任丘路街道", "长庆路街道", "濮东街道", "岳村镇", "孟轲乡",
    ],
    "410971": [  # 开发区
        "昆吾街道", "皇甫街道", "濮上街道", "王助镇", "新习镇", "胡村乡",
    ],
    "410972": [  # 工业园区 (placeholder street names)
        "园区街道", "化工路街道",
    ],
    "410973": [  # 示范区 (placeholder street names)
        "开州街道", "龙湖街道", "绿城街道",
    ],
}


# Where each county-level unit lies (WGS-84), as a disc: the centre of its territory and the radius
# of a circle of its area (濮阳县 1,382 km², 清丰县 828, 南乐县 623, 范县 617, 台前县 454, 华龙区 317;
# the zones as administered). An approximation for the synthetic city's homes and for sanity checks,
# not a boundary: real homes near a county line may fall outside their county's disc.
COUNTY_AREAS: dict[str, tuple[float, float, float]] = {
    # code: (centre latitude, centre longitude, radius km)
    "410928": (35.600, 115.100, 21.0),   # 濮阳县: south of the city, along the Yellow River
    "410922": (35.895, 115.115, 16.0),   # 清丰县
    "410923": (36.070, 115.205, 14.0),   # 南乐县
    "410926": (35.850, 115.500, 14.0),   # 范县
    "410927": (35.970, 115.870, 12.0),   # 台前县
    "410902": (35.775, 115.070, 10.0),   # 华龙区: the city itself
    "410971": (35.730, 114.985, 6.0),    # 开发区
    "410972": (35.800, 114.950, 3.0),    # 工业园区
    "410973": (35.700, 115.120, 4.5),    # 示范区
}
METRES_PER_DEGREE_LAT = 111_320.0


def distance_from_centre_km(county_code: str, lat: float, lon: float) -> float:
    """How far a point lies from the centre of a county's disc (equirectangular; exact enough at
    these scales)."""
    import math

    c_lat, c_lon, _ = COUNTY_AREAS[county_code]
    dy = (lat - c_lat) * METRES_PER_DEGREE_LAT
    dx = (lon - c_lon) * METRES_PER_DEGREE_LAT * math.cos(math.radians(c_lat))
    return math.hypot(dx, dy) / 1000


def inside_county_area(county_code: str, lat: float, lon: float) -> bool:
    return distance_from_centre_km(county_code, lat, lon) <= COUNTY_AREAS[county_code][2]
