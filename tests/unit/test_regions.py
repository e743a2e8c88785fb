"""Regions: GB/T 2260 provinces, the task list's county-level units, townships.

SPEC §2 "Administrative units".
"""

from __future__ import annotations

from pathlib import Path

from shared.regions import PROVINCE_CODES, TASK_LIST_PATH, TOWNSHIPS, County, is_known_region, load_counties

REPO = Path(__file__).resolve().parents[2]


def test_all_34_province_level_units_are_listed():
    assert len(PROVINCE_CODES) == 34
    assert PROVINCE_CODES["41"] == "河南省"
    assert PROVINCE_CODES["11"] == "北京市"
    assert PROVINCE_CODES["65"] == "新疆维吾尔自治区"
    assert {"71", "81", "82"} <= PROVINCE_CODES.keys()


def test_region_codes_anywhere_in_china_are_known():
    assert is_known_region("410928")
    assert is_known_region("370100")
    assert is_known_region("410971")


def test_region_codes_under_no_province_are_unknown():
    assert not is_known_region("990105")
    assert not is_known_region("000000")
    assert not is_known_region("41092")
    assert not is_known_region("41092A")
    assert not is_known_region("４１０９２８")  # full-width digits are not a code


def test_task_list_ships_inside_the_package():
    assert TASK_LIST_PATH == REPO / "shared" / "reference" / "puyang_task_list_2022.csv"
    assert TASK_LIST_PATH.is_file()


def test_nine_county_level_units_sum_to_the_city_elderly_population():
    counties = load_counties()
    assert len(counties) == 9
    assert sum(c.elderly_60plus for c in counties.values()) == 666_648
    assert [c.kind for c in counties.values()].count("zone") == 3


def test_county_row_is_typed():
    puyang = load_counties()["410928"]
    assert isinstance(puyang, County)
    assert puyang.name_zh == "濮阳县"
    assert puyang.name_en == "Puyang County"
    assert puyang.kind == "county"
    assert puyang.elderly_60plus == 178_337
    assert puyang.villages == 980
    assert puyang.training_task_2022 == 1500


def test_load_counties_is_cached_but_callers_cannot_corrupt_the_cache():
    first = load_counties()
    first.pop("410928")
    assert "410928" in load_counties()


def test_load_counties_reads_another_file(tmp_path):
    header = TASK_LIST_PATH.read_text(encoding="utf-8").splitlines()[0]
    row = "419999,新区,New District,district,100" + ",0" * 15
    path = tmp_path / "tasks.csv"
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    counties = load_counties(path)
    assert list(counties) == ["419999"]
    assert counties["419999"].elderly_60plus == 100


def test_every_unit_has_townships_and_rural_counts_match_township_homes():
    counties = load_counties()
    assert set(TOWNSHIPS) == set(counties)
    for code, names in TOWNSHIPS.items():
        assert names and len(names) == len(set(names)), code
        # One township care home per rural township in the five counties.
        if counties[code].kind == "county":
            rural = [n for n in names if n.endswith(("镇", "乡"))]
            assert len(rural) == counties[code].township_homes_existing, code


def test_real_township_names_are_used():
    assert {"城关镇", "柳屯镇", "文留镇"} <= set(TOWNSHIPS["410928"])
    assert "濮城镇" in TOWNSHIPS["410926"]
