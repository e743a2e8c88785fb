"""The family-doctor contract (家庭医生签约) as a resident field, without a server: the record rules,
the import template's columns in Chinese and English, the registry's patch rule, the event
contract (left out at its defaults, so old snapshots serialise as before) and the synthetic city."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import date, timedelta

import pytest

from eldercare.synthetic import AS_OF, generate_residents
from services.registry.domain.errors import InvalidRecord
from services.registry.domain.imports import (
    CONTRACT, SIGNED_ON, STATUS, RowChecker, field_of_header, map_headers,
)
from services.registry.domain.residents import normalise_contract, normalise_signed_on, validate_resident
from services.registry.handlers import family_doctor_changes, today_local
from services.registry.importer import changed_fields, family_doctor_kept
from shared.events.residents import ResidentSnapshot
from shared.idcard import make_id_number
from shared.messaging.outbox import fields_of
from shared.regions import load_counties

TODAY = date(2026, 11, 25)
KNOWN = frozenset(load_counties())
GOOD_ID = make_id_number("410928", date(1945, 3, 15), 123)
RECORD = {"name": "王秀英", "id_number": GOOD_ID, "county_code": "410928", "township": "城关镇",
          "village": "东街社区", "living_arrangement": "alone"}
CHINESE = ["姓名", "身份证号", "县区代码", "乡镇街道", "村社区", "居住状况", "家庭医生签约", "签约日期"]


# ---------------------------------------------------------------- the record


@pytest.mark.parametrize("word,value", [("是", True), ("已签约", True), ("yes", True), ("TRUE", True), ("1", True),
                                        ("否", False), ("未签约", False), ("no", False), ("0", False), ("", None),
                                        (None, None), (True, True), (False, False)])
def test_contract_words_in_either_language(word, value):
    assert normalise_contract(word) is value


def test_a_contract_word_that_is_neither_yes_nor_no_is_refused():
    with pytest.raises(ValueError, match="是 .* 否"):
        normalise_contract("可能")


@pytest.mark.parametrize("text", ["2025-03-01", "2025/3/1", "2025.3.1", "2025年3月1日", "20250301",
                                  "2025-03-01 00:00:00", date(2025, 3, 1)])
def test_signing_dates_as_clerks_write_them(text):
    assert normalise_signed_on(text, TODAY) == date(2025, 3, 1)


def test_a_signing_date_in_the_future_or_not_a_date_is_refused():
    with pytest.raises(ValueError, match="future"):
        normalise_signed_on(TODAY + timedelta(days=1), TODAY)
    with pytest.raises(ValueError, match="not a date"):
        normalise_signed_on("2025-02-30", TODAY)
    assert normalise_signed_on(TODAY, TODAY) == TODAY  # today is not the future


def test_a_record_with_a_contract_and_its_date_validates():
    fields, errors = validate_resident({**RECORD, "family_doctor_contract": "是",
                                        "family_doctor_signed_on": "2025-03-01"}, KNOWN, TODAY)
    assert not errors and fields.family_doctor_contract is True and fields.family_doctor_signed_on == date(2025, 3, 1)
    fields, errors = validate_resident(RECORD, KNOWN, TODAY)
    assert not errors and fields.family_doctor_contract is None and fields.family_doctor_signed_on is None


@pytest.mark.parametrize("contract", [None, False, "否"])
def test_a_signing_date_without_a_contract_is_refused_naming_the_date(contract):
    _, errors = validate_resident({**RECORD, "family_doctor_contract": contract,
                                   "family_doctor_signed_on": "2025-03-01"}, KNOWN, TODAY)
    assert [e.field for e in errors] == ["family_doctor_signed_on"]
    assert "family_doctor_contract" in errors[0].message


def test_a_future_signing_date_is_refused_naming_the_date():
    _, errors = validate_resident({**RECORD, "family_doctor_contract": True,
                                   "family_doctor_signed_on": TODAY + timedelta(days=3)}, KNOWN, TODAY)
    assert [e.field for e in errors] == ["family_doctor_signed_on"] and "future" in errors[0].message


# ---------------------------------------------------------------- the patch rule


def _row(contract: bool, signed_on: date | None) -> dict:
    return {"family_doctor_contract": contract, "family_doctor_signed_on": signed_on}


def test_ending_a_contract_clears_its_date():
    out = family_doctor_changes(_row(True, date(2025, 3, 1)), {"family_doctor_contract": False})
    assert out == {"family_doctor_contract": False, "family_doctor_signed_on": None}


def test_a_date_alone_is_accepted_on_a_resident_with_a_contract_only():
    assert family_doctor_changes(_row(True, None), {"family_doctor_signed_on": date(2025, 3, 1)}) == \
        {"family_doctor_contract": True, "family_doctor_signed_on": date(2025, 3, 1)}
    with pytest.raises(InvalidRecord) as refused:
        family_doctor_changes(_row(False, None), {"family_doctor_signed_on": date(2025, 3, 1)})
    assert refused.value.field == "family_doctor_signed_on"


def test_a_patch_with_a_future_date_is_refused_and_one_without_the_fields_is_left_alone():
    with pytest.raises(InvalidRecord) as refused:
        family_doctor_changes(_row(True, None), {"family_doctor_signed_on": today_local() + timedelta(days=1)})
    assert refused.value.field == "family_doctor_signed_on"
    assert family_doctor_changes(_row(True, date(2025, 3, 1)), {"phone": "13812345678"}) == {"phone": "13812345678"}


# ---------------------------------------------------------------- the import template


def test_the_template_names_the_columns_in_chinese_and_english():
    for header, field in (("家庭医生签约", "family_doctor_contract"), ("签约日期", "family_doctor_signed_on"),
                          ("family_doctor_contract", "family_doctor_contract"),
                          ("family_doctor_signed_on", "family_doctor_signed_on"),
                          ("是否签约家庭医生", "family_doctor_contract"), ("签约时间", "family_doctor_signed_on")):
        assert field_of_header(header) == field


def _check(contract: str, signed_on: str):
    check = RowChecker(map_headers(CHINESE), KNOWN, None, TODAY)
    staged = check.check(2, ["王秀英", GOOD_ID, "410928", "城关镇", "东街社区", "独居", contract, signed_on])
    return staged, check.errors


def test_an_imported_contract_is_staged_with_its_date():
    staged, errors = _check("是", "2025/3/1")
    assert not errors and staged[CONTRACT] is True and staged[SIGNED_ON] == date(2025, 3, 1)
    staged, errors = _check("否", "")
    assert not errors and staged[CONTRACT] is False and staged[SIGNED_ON] is None
    staged, errors = _check("", "")  # not given: a new resident has none, a registered one keeps theirs
    assert not errors and staged[CONTRACT] is None and staged[STATUS] is None


@pytest.mark.parametrize("contract,signed_on,column,zh", [
    ("也许", "", "家庭医生签约", "请填写 是 或 否"),
    ("是", "明年", "签约日期", "不是日期"),
    ("是", "2026-12-01", "签约日期", "在今天之后"),
    ("", "2025-03-01", "签约日期", "家庭医生签约一栏应为“是”"),
    ("否", "2025-03-01", "签约日期", "家庭医生签约一栏应为“是”"),
])
def test_bad_family_doctor_cells_are_explained_chinese_first(contract, signed_on, column, zh):
    staged, errors = _check(contract, signed_on)
    assert staged is None and len(errors) == 1
    row_no, written, _, message = errors[0]
    assert (row_no, written) == (2, column) and zh in message and " / " in message


def test_a_changed_contract_is_a_change_and_an_empty_one_is_not():
    old = {"name": "王秀英", "phone": None, "township": "城关镇", "village": "东街社区", "address": None,
           "living_arrangement": "alone", "categories": [], "ability_level": None, "emergency_contact": None,
           "emergency_phone": None, "status": "active", "family_doctor_contract": False,
           "family_doctor_signed_on": None}
    assert changed_fields(old, _check("是", "2025-03-01")[0]) == ["family_doctor_contract", "family_doctor_signed_on"]
    assert changed_fields(old, _check("", "")[0]) == []
    assert changed_fields(old, _check("否", "")[0]) == []


def test_a_contract_without_a_date_keeps_the_recorded_date_and_none_clears_it():
    signed = {"family_doctor_contract": True, "family_doctor_signed_on": date(2025, 3, 1)}
    staged = lambda contract, on: (None,) * CONTRACT + (contract, on)  # noqa: E731
    assert family_doctor_kept(staged(True, None), signed) == (True, date(2025, 3, 1))
    assert family_doctor_kept(staged(True, date(2025, 9, 9)), signed) == (True, date(2025, 9, 9))
    assert family_doctor_kept(staged(False, None), signed) == (False, None)
    assert family_doctor_kept(staged(None, None), signed) == (True, date(2025, 3, 1))
    assert family_doctor_kept(staged(None, None), None) == (False, None)  # a new resident
    assert family_doctor_kept(staged(True, None), None) == (True, None)


# ---------------------------------------------------------------- the event contract

SNAPSHOT = dict(resident_id="r", county_code="410928", name="王秀英", birth_date="1945-03-15", gender="female",
                township="城关镇", village="东街社区", living_arrangement="alone", version=2)


def test_a_snapshot_without_a_contract_serialises_as_before():
    model = ResidentSnapshot.model_validate(SNAPSHOT)
    dumped = model.model_dump(mode="json", exclude_none=True)
    assert "family_doctor_contract" not in dumped and "family_doctor_signed_on" not in dumped
    assert list(dumped)[-1] == "version"
    assert fields_of(ResidentSnapshot)(**SNAPSHOT, family_doctor_contract=False, family_doctor_signed_on=None) \
        == dumped


def test_a_snapshot_with_a_contract_carries_it_on_both_paths():
    model = ResidentSnapshot.model_validate({**SNAPSHOT, "family_doctor_contract": True,
                                             "family_doctor_signed_on": "2025-03-01"})
    dumped = model.model_dump(mode="json", exclude_none=True)
    assert dumped["family_doctor_contract"] is True and dumped["family_doctor_signed_on"] == "2025-03-01"
    assert fields_of(ResidentSnapshot)(**SNAPSHOT, family_doctor_contract=True,
                                       family_doctor_signed_on="2025-03-01") == dumped
    no_date = fields_of(ResidentSnapshot)(**SNAPSHOT, family_doctor_contract=True)
    assert no_date == ResidentSnapshot.model_validate({**SNAPSHOT, "family_doctor_contract": True}).model_dump(
        mode="json", exclude_none=True)


# ---------------------------------------------------------------- the synthetic city


def _age(id_number: str) -> int:
    birth = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    return AS_OF.year - birth.year - ((AS_OF.month, AS_OF.day) < (birth.month, birth.day))


def test_60_to_75_percent_of_65plus_elders_have_a_contract_varying_by_county():
    rows = list(generate_residents(40_000, seed=13))
    signed, elders = defaultdict(int), defaultdict(int)
    for r in rows:
        if r["status"] == "active" and _age(r["id_number"]) >= 65:
            elders[r["county_code"]] += 1
            signed[r["county_code"]] += r["family_doctor_contract"]
        if r["status"] != "active":
            assert r["family_doctor_contract"] is False
        if r["family_doctor_signed_on"] is not None:
            assert r["family_doctor_contract"] and AS_OF - timedelta(days=366) < r["family_doctor_signed_on"] < AS_OF
    shares = {c: signed[c] / elders[c] for c in elders if elders[c] > 500}
    assert len(shares) >= 6
    assert all(0.57 <= s <= 0.78 for s in shares.values()), shares
    assert max(shares.values()) - min(shares.values()) > 0.03  # counties differ
    total = sum(signed.values()) / sum(elders.values())
    assert 0.6 <= total <= 0.75


def test_contracts_leave_every_other_field_as_it_was():
    # The digest of these rows as the generator gave them before it drew contracts (or home
    # locations, which draw on a generator of their own too).
    rows = list(generate_residents(300, seed=3))
    rest = [{k: v for k, v in r.items() if not k.startswith(("family_doctor", "home_"))} for r in rows]
    assert hashlib.sha256(repr(rest).encode()).hexdigest() == \
        "e006b0b14c425ad651a1f48b7de06568c21bf56637440249963e435e6d8433d5"
    assert any(r["family_doctor_contract"] for r in rows) and not all(r["family_doctor_contract"] for r in rows)
