"""Personal data masked by content, and spreadsheet cells that cannot run as formulas."""

import json
import logging

from shared.observability import JsonFormatter
from shared.privacy import mask_personal, spreadsheet_cell, spreadsheet_safe

ID = "41092819450315123X"


def test_id_and_phone_numbers_are_masked_wherever_they_appear_in_a_text():
    text = f"住东街3号,身份证{ID},电话13812345678,座机0393-4412345,另一个 138 1234 5678"
    masked = mask_personal(text)
    assert ID not in masked and "410928********123*" in masked
    assert "13812345678" not in masked and "138****5678" in masked
    assert "4412345" not in masked and "1234 5678" not in masked
    assert masked.startswith("住东街3号,身份证")


def test_full_width_digits_and_numbers_with_the_country_code_are_masked_too():
    assert "1234" not in mask_personal("电话:１３８１２３４５６７８")
    assert "5678" not in mask_personal("+8613812345678")[:-4] and "+86" in mask_personal("+8613812345678")


def test_an_id_number_in_scientific_notation_shows_neither_region_nor_birth_date():
    assert mask_personal("4.10928194503151E+17") == "4.**************E+17"
    assert mask_personal("4.10928E+17") == "4.*****E+17"
    assert mask_personal("1.5E+3") == "1.5E+3"  # an ordinary number


def test_masking_is_idempotent_and_leaves_our_own_identifiers_alone():
    once = mask_personal(f"{ID} 13812345678")
    assert mask_personal(once) == once
    uuid_text = "job 0192a8c4-7e1f-7000-8000-446655440000 trace 4bf92f3577b34da6a3ce929d0e0e4736"
    assert mask_personal(uuid_text) == uuid_text
    assert mask_personal("第 1,000,000 行 410928 县区") == "第 1,000,000 行 410928 县区"


def test_cells_that_would_start_a_formula_are_neutralised_and_numbers_are_not():
    for dangerous in ("=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        assert spreadsheet_cell(dangerous) == "'" + dangerous
    assert spreadsheet_cell("王秀英") == "王秀英" and spreadsheet_cell(-0.5) == -0.5 and spreadsheet_cell(None) is None
    assert spreadsheet_safe([["=1", 2], ["a", "@b"]]) == [["'=1", 2], ["a", "'@b"]]


def test_json_log_lines_mask_id_and_phone_numbers_in_message_fields_and_traceback():
    try:
        raise ValueError(f"duplicate key (id_number)=({ID})")
    except ValueError:
        import sys
        exc_info = sys.exc_info()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "lookup of %s failed", (ID,), exc_info)
    record.fields = {"phone": "13812345678", "count": 3}
    line = JsonFormatter("registry").format(record)
    assert ID not in line and "13812345678" not in line and ID[:6] + "********" in line
    entry = json.loads(line)
    assert entry["count"] == 3 and entry["phone"] == "138****5678"


def test_reporting_exports_neutralise_formula_cells_through_the_shared_helper():
    from services.reporting.api.aggregates import export_table

    indicator = {"target": 1, "actual": -0.5, "task_2022": 1, "live_requirement": 1, "progress": None}
    row = {"county_code": "410928", "name_zh": "=HYPERLINK(\"http://x\")",
           "elderly_60plus": {"task_list": 1, "registry": 2},
           "indicators": {k: dict(indicator) for k in (
               "beds", "beds_per_1000", "nursing_bed_share", "nursing_bed_share_special_care", "occupancy",
               "family_beds", "facilities_county_special_care", "facilities_street_center",
               "facilities_daycare_center", "facilities_township_home", "facilities_happiness_home", "training",
               "smart_platform")}}
    headers, [cells] = export_table([row])
    assert cells[1] == "'=HYPERLINK(\"http://x\")"
    # A negative number is a number, not a formula: it stays as it is.
    assert cells[headers.index(("养老床位", "已建"))] == -0.5
