"""GB 11643 resident ID numbers: validation, derived facts, masking.

SPEC §2 "Resident identity" and "Privacy".
"""

from __future__ import annotations

from datetime import date

import pytest

from shared.idcard import (
    IdNumberError,
    check_character,
    make_id_number,
    mask_id_number,
    mask_phone,
    parse_id_number,
)

TODAY = date(2026, 1, 1)
GB_EXAMPLE = "11010519491231002X"  # the worked example of GB 11643-1999


def _reason(value: str, today: date = TODAY) -> IdNumberError:
    with pytest.raises(IdNumberError) as caught:
        parse_id_number(value, today=today)
    return caught.value


def test_standard_example_is_valid_and_gives_birth_date_region_and_gender():
    facts = parse_id_number(GB_EXAMPLE, today=TODAY)
    assert facts.id_number == GB_EXAMPLE
    assert facts.region_code == "110105"
    assert facts.birth_date == date(1949, 12, 31)
    assert facts.gender == "female"  # sequence 002 is even


def test_check_character_uses_iso_7064_mod_11_2_weights():
    assert check_character(GB_EXAMPLE[:17]) == "X"
    # Weighted sum of 41092819500301123 is 225; 225 mod 11 = 5 → "7".
    digits = "41092819500301123"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(digits, weights))
    assert total == 225
    assert check_character(digits) == "7"


def test_check_character_refuses_anything_but_17_digits():
    with pytest.raises(ValueError):
        check_character("1234")
    with pytest.raises(ValueError):
        check_character("4109281950030112X")


def test_made_number_parses_back_to_the_same_facts():
    number = make_id_number("410928", date(1950, 3, 1), 123)
    facts = parse_id_number(number, today=TODAY)
    assert number[:17] == "41092819500301123"
    assert facts.region_code == "410928"
    assert facts.birth_date == date(1950, 3, 1)
    assert facts.gender == "male"  # odd sequence


def test_even_sequence_is_female_and_odd_is_male():
    assert parse_id_number(make_id_number("410922", date(1940, 6, 1), 0), today=TODAY).gender == "female"
    assert parse_id_number(make_id_number("410922", date(1940, 6, 1), 999), today=TODAY).gender == "male"


def test_make_id_number_refuses_bad_sequence_and_region():
    with pytest.raises(ValueError):
        make_id_number("410928", date(1950, 1, 1), 1000)
    with pytest.raises(ValueError):
        make_id_number("990000", date(1950, 1, 1), 1)


def test_wrong_check_character_is_rejected_naming_the_field():
    error = _reason("110105194912310021")
    assert error.field == "id_number"
    assert error.reason == "check_character"
    assert "expected X" in str(error)


def test_error_message_masks_the_number():
    error = _reason("110105194912310021")
    assert "110105194912310021" not in str(error)
    assert "110105********002*" in str(error)


def test_lower_case_x_is_accepted_and_normalised():
    assert parse_id_number(GB_EXAMPLE.lower(), today=TODAY).id_number == GB_EXAMPLE


def test_surrounding_spaces_and_full_width_characters_are_normalised():
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in GB_EXAMPLE)  # as typed with a Chinese IME
    assert parse_id_number(f"  {full_width}\t", today=TODAY).id_number == GB_EXAMPLE


def test_february_30_is_an_impossible_birth_date():
    number = "41092819990230" + "123"
    error = _reason(number + check_character(number))
    assert error.reason == "birth_date"
    assert error.field == "id_number"


def test_29_february_is_valid_only_in_a_leap_year():
    ok = "41092819480229123"
    parse_id_number(ok + check_character(ok), today=TODAY)
    bad = "41092819490229123"
    assert _reason(bad + check_character(bad)).reason == "birth_date"


def test_future_birth_date_is_rejected():
    number = make_id_number("410928", date(2026, 6, 1), 11)
    assert _reason(number, today=TODAY).reason == "future_birth_date"
    parse_id_number(number, today=date(2026, 6, 1))  # born today is fine


def test_birth_year_before_1880_is_rejected():
    number = "41092818790101123"
    assert _reason(number + check_character(number)).reason == "birth_date"


def test_unknown_province_is_rejected():
    number = "99010519491231002"
    error = _reason(number + check_character(number))
    assert error.reason == "region"
    assert "99" in str(error)


def test_other_provinces_codes_are_accepted_since_people_move():
    for region in ("370100", "130400", "650100", "810000", "710000"):
        parse_id_number(make_id_number(region, date(1950, 1, 1), 1), today=TODAY)


@pytest.mark.parametrize("value", ["1101051949123100", "11010519491231002X1", "4109"])
def test_wrong_length_is_rejected(value):
    error = _reason(value)
    assert error.reason == "length"
    assert str(len(value)) in str(error)


@pytest.mark.parametrize("value", ["11010519491231O02X", "1101051949123100-X", "X10105194912310021"])
def test_non_digits_are_rejected(value):
    assert _reason(value).reason == "characters"


def test_missing_number_is_rejected():
    assert _reason("   ").reason == "missing"
    with pytest.raises(IdNumberError):
        parse_id_number(None, today=TODAY)  # type: ignore[arg-type]


def test_number_typed_as_a_spreadsheet_number_is_rejected():
    with pytest.raises(IdNumberError) as caught:
        parse_id_number(4.10928195003011e17, today=TODAY)  # type: ignore[arg-type]
    assert caught.value.reason == "characters"


def test_age_on_counts_completed_years():
    facts = parse_id_number(make_id_number("410928", date(1950, 3, 1), 1), today=TODAY)
    assert facts.age_on(date(2026, 2, 28)) == 75
    assert facts.age_on(date(2026, 3, 1)) == 76


def test_leap_day_birthday_turns_older_on_1_march():
    facts = parse_id_number(make_id_number("410928", date(1948, 2, 29), 1), today=TODAY)
    assert facts.age_on(date(2025, 2, 28)) == 76
    assert facts.age_on(date(2025, 3, 1)) == 77


def test_facts_are_immutable():
    facts = parse_id_number(GB_EXAMPLE, today=TODAY)
    with pytest.raises(AttributeError):
        facts.gender = "male"  # type: ignore[misc]


def test_id_number_is_masked_to_region_and_sequence_hiding_the_check_character():
    # The check character depends on the birth date: shown, it narrows the date to ~1 in 11.
    assert mask_id_number("41092819500301123X") == "410928********123*"
    assert mask_id_number(None) is None


def test_old_15_digit_number_is_masked_too():
    masked = mask_id_number("410928500301123")
    assert masked == "410928******123"


def test_phone_is_masked_keeping_first_three_and_last_four():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("039388881234") == "039*****1234"  # landline with area code
    assert mask_phone("88881234") == "888*1234"
    assert mask_phone("12345") == "***45"
    assert mask_phone(None) is None
