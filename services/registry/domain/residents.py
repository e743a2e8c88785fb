"""Resident record rules (SPEC §2): field vocabularies in English and Chinese, normalisation and
validation of one record as a county clerk typed it. Pure: no I/O, unit-tested."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime

from shared.idcard import IdNumberError, IdentityFacts, parse_id_number

LIVING_ARRANGEMENTS: dict[str, str] = {
    "alone": "独居", "empty_nest": "空巢", "with_family": "与家人同住", "institution": "机构",
}
CATEGORIES: dict[str, str] = {
    "extreme_poverty_centralised": "特困集中供养",
    "extreme_poverty_dispersed": "特困分散供养",
    "minimum_allowance": "低保",
    "low_income": "低收入",
    "severe_disability": "重残",
    "dementia": "失智",
    "family_planning_special": "计生特殊家庭",
}
STATUSES = ("active", "deceased", "transferred")
_ZH_LIVING = {zh: code for code, zh in LIVING_ARRANGEMENTS.items()} | {"与家人": "with_family", "同住": "with_family"}
_ZH_CATEGORY = {zh: code for code, zh in CATEGORIES.items()} | {
    "计划生育特殊家庭": "family_planning_special", "特困": None,  # 特困 alone is ambiguous: say so
}
_PHONE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8}|\d{7,8})$")
_SEPARATORS = re.compile(r"[;；,，、\s]+")

# The record's fields in SPEC order, with the spreadsheet's Chinese headers.
FIELD_HEADERS_ZH: dict[str, str] = {
    "name": "姓名", "id_number": "身份证号", "phone": "联系电话", "county_code": "县区代码",
    "township": "乡镇街道", "village": "村社区", "address": "详细地址", "living_arrangement": "居住状况",
    "categories": "特殊困难类别", "ability_level": "能力等级", "emergency_contact": "紧急联系人",
    "emergency_phone": "紧急联系电话", "home_lat": "住址纬度", "home_lon": "住址经度",
}
# Columns after `status` in the template (optional, like it): the family-doctor contract (家庭医生签约).
FAMILY_DOCTOR_HEADERS_ZH: dict[str, str] = {
    "family_doctor_contract": "家庭医生签约", "family_doctor_signed_on": "签约日期",
}
FIELD_LABELS_ZH = FIELD_HEADERS_ZH | {"status": "状态"} | FAMILY_DOCTOR_HEADERS_ZH
_YES = frozenset({"是", "已签约", "签约", "有", "yes", "y", "true", "1", "√", "✓"})
_NO = frozenset({"否", "未签约", "无", "没有", "no", "n", "false", "0", "×", "✗"})
_TIME_OF_DAY = re.compile(r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field, in words a county clerk understands."""

    field: str
    message: str


@dataclass(slots=True)
class ResidentFields:
    """A validated resident record (what a write stores), with facts derived from the ID number."""

    name: str
    id_number: str
    county_code: str
    township: str
    village: str
    living_arrangement: str
    birth_date: date
    gender: str
    phone: str | None = None
    address: str | None = None
    categories: list[str] = field(default_factory=list)
    ability_level: int | None = None
    emergency_contact: str | None = None
    emergency_phone: str | None = None
    # The home's location (WGS-84 decimal degrees, both or neither), for visit verification.
    home_lat: float | None = None
    home_lon: float | None = None
    # None: not given (a new record has no contract; an update keeps the one recorded).
    family_doctor_contract: bool | None = None
    family_doctor_signed_on: date | None = None

    def comparable(self) -> tuple:
        """The stored values, for 'did anything change?' (re-importing a file changes nothing)."""
        return (self.name, self.phone, self.county_code, self.township, self.village, self.address,
                self.living_arrangement, tuple(sorted(self.categories)), self.ability_level,
                self.emergency_contact, self.emergency_phone, self.home_lat, self.home_lon)


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def normalise_living_arrangement(value: object) -> str:
    """A living-arrangement code from its code or Chinese word (ValueError with the choices)."""
    text = _text(value)
    if text is None:
        raise ValueError("is required: one of alone 独居, empty_nest 空巢, with_family 与家人同住, institution 机构")
    if text in LIVING_ARRANGEMENTS:
        return text
    if text in _ZH_LIVING:
        return _ZH_LIVING[text]
    raise ValueError(f"'{text}' is not a living arrangement; use alone 独居, empty_nest 空巢, "
                     "with_family 与家人同住 or institution 机构")


def normalise_categories(value: object) -> list[str]:
    """Category codes from a list or a ';'-separated cell of codes or Chinese words."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else _SEPARATORS.split(str(value))
    out: list[str] = []
    for item in items:
        text = _text(item)
        if text is None or text in {"无", "none", "-"}:
            continue
        code = text if text in CATEGORIES else _ZH_CATEGORY.get(text, "?")
        if code is None:
            raise ValueError("'特困' must say 特困集中供养 (centralised) or 特困分散供养 (dispersed)")
        if code == "?":
            raise ValueError(f"'{text}' is not a special-hardship category; use "
                             + ", ".join(f"{c} {zh}" for c, zh in CATEGORIES.items()))
        if code not in out:
            out.append(code)
    if "extreme_poverty_centralised" in out and "extreme_poverty_dispersed" in out:
        raise ValueError("extreme poverty support is either centralised or dispersed, not both")
    return out


def normalise_ability_level(value: object) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not an ability level; use 0 (intact) to 4 (complete loss)") from None
    if number != int(number) or not 0 <= number <= 4:
        raise ValueError(f"'{text}' is not an ability level; use 0 (intact) to 4 (complete loss)")
    return int(number)


def normalise_phone(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    compact = re.sub(r"[\s()（）]", "", text)
    if compact.startswith("+86"):
        compact = compact[3:]
    if compact.endswith(".0"):  # spreadsheets turn numbers into floats
        compact = compact[:-2]
    if not _PHONE.match(compact):
        raise ValueError("is not a phone number: use an 11-digit mobile number or an area code and number")
    return compact


def normalise_contract(value: object) -> bool | None:
    """A family-doctor contract cell: true/false, 是/否 (已签约/未签约), yes/no, 1/0; empty is None."""
    if isinstance(value, bool) or value is None:
        return value
    text = _text(value)
    if text is None:
        return None
    word = text.lower() if text.isascii() else text
    if word.endswith(".0"):
        word = word[:-2]
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise ValueError(f"'{text}' is not yes or no; use 是 (yes, signed) or 否 (no)")


def normalise_signed_on(value: object, today: date | None = None) -> date | None:
    """The day a family-doctor contract was signed: a date, or 2025-03-01, 2025/3/1, 2025.3.1,
    2025年3月1日, 20250301; not in the future (`today`, the city's day)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = _text(value)
        if text is None:
            return None
        text = _TIME_OF_DAY.sub("", text)  # a date cell with a time: the day counts
        match = _DATE.match(text) or (re.match(r"^(\d{4})(\d{2})(\d{2})$", text) if len(text) == 8 else None)
        try:
            if match is None:
                raise ValueError
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            raise ValueError(f"'{text}' is not a date; write it as 2025-03-01") from None
    if today is not None and day > today:
        raise ValueError(f"{day.isoformat()} is in the future; the contract's date is the day it was signed")
    return day


def family_doctor_problem(contract: bool | None, signed_on: date | None) -> str | None:
    """Why a contract and its date do not go together (a date needs a contract), or None."""
    if signed_on is not None and contract is not True:
        return ("A signing date needs family_doctor_contract true" if contract is None else
                "family_doctor_contract is false: a resident without a contract has no signing date")
    return None
COORDINATE_RANGES = {"home_lat": (-90.0, 90.0, "latitude"), "home_lon": (-180.0, 180.0, "longitude")}


def normalise_coordinate(value: object, field_name: str) -> float | None:
    """A WGS-84 decimal degree (a number or its text; blank is None), rounded to 6 decimals (~0.1 m)."""
    if value is None:
        return None
    lo, hi, word = COORDINATE_RANGES[field_name]
    text = str(value).strip()
    if not text:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a {word} in decimal degrees (WGS-84, e.g. 35.7621)") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise ValueError(f"'{text}' is not a {word}: use decimal degrees from {lo:g} to {hi:g} (WGS-84)")
    return round(number, 6)


def _bounded(value: object, label: str, max_len: int, required: bool) -> str | None:
    text = _text(value)
    if text is None:
        if required:
            raise ValueError("is required")
        return None
    if len(text) > max_len:
        raise ValueError(f"is longer than {max_len} characters")
    return text


def validate_resident(raw: dict, known_counties: set[str] | frozenset[str],
                      today: date | None = None) -> tuple[ResidentFields | None, list[FieldError]]:
    """Validate and normalise one record; every problem is reported, named by its field."""
    errors: list[FieldError] = []

    def take(name: str, fn):
        try:
            return fn(raw.get(name))
        except IdNumberError as exc:
            errors.append(FieldError(name, exc.message))
        except ValueError as exc:
            message = str(exc)
            errors.append(FieldError(name, message if message[:1].isupper() or message.startswith("'")
                                     else f"{name} {message}"))
        return None

    name = take("name", lambda v: _bounded(v, "name", 50, True))
    facts: IdentityFacts | None = take("id_number", lambda v: parse_id_number(v, today=today))
    county = take("county_code", lambda v: _county(v, known_counties))
    township = take("township", lambda v: _bounded(v, "township", 50, True))
    village = take("village", lambda v: _bounded(v, "village", 50, True))
    address = take("address", lambda v: _bounded(v, "address", 200, False))
    living = take("living_arrangement", normalise_living_arrangement)
    categories = take("categories", normalise_categories)
    level = take("ability_level", normalise_ability_level)
    phone = take("phone", normalise_phone)
    contact = take("emergency_contact", lambda v: _bounded(v, "emergency_contact", 50, False))
    emergency_phone = take("emergency_phone", normalise_phone)
    home_lat = take("home_lat", lambda v: normalise_coordinate(v, "home_lat"))
    home_lon = take("home_lon", lambda v: normalise_coordinate(v, "home_lon"))
    if (home_lat is None) != (home_lon is None) and not any(e.field.startswith("home_") for e in errors):
        missing = "home_lon" if home_lon is None else "home_lat"
        errors.append(FieldError(missing, f"{missing} is required with {'home_lat' if missing == 'home_lon' else 'home_lon'}: "
                                          "a home location is given as both latitude and longitude"))
    contract = take("family_doctor_contract", normalise_contract)
    signed_on = take("family_doctor_signed_on", lambda v: normalise_signed_on(v, today))
    if not any(e.field.startswith("family_doctor") for e in errors):
        problem = family_doctor_problem(contract, signed_on)
        if problem is not None:
            errors.append(FieldError("family_doctor_signed_on", problem))
    if errors:
        return None, errors
    assert facts is not None and name and county and township and village and living
    return ResidentFields(
        name=name, id_number=facts.id_number, county_code=county, township=township, village=village,
        living_arrangement=living, birth_date=facts.birth_date, gender=facts.gender, phone=phone,
        address=address, categories=categories or [], ability_level=level, emergency_contact=contact,
        emergency_phone=emergency_phone, home_lat=home_lat, home_lon=home_lon,
        family_doctor_contract=contract, family_doctor_signed_on=signed_on,
    ), []


def _county(value: object, known: set[str] | frozenset[str]) -> str:
    text = _text(value)
    if text is None:
        raise ValueError("is required")
    if text.endswith(".0"):
        text = text[:-2]
    if text not in known:
        raise ValueError(f"'{text}' is not a county code of this city; use one of {', '.join(sorted(known))}")
    return text


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
