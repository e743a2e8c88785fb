"""The service menu (点单式服务清单): the 22 services of shared/reference/service_categories.csv
with the terms the city sets for each — unit, base price (integer fen), minutes booked per unit,
the caregiver qualification it needs and who may order it (a rule, see rules.py)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

CATEGORIES_PATH = Path(__file__).resolve().parents[3] / "shared" / "reference" / "service_categories.csv"
UNITS = ("visit", "hour", "meal", "session")

# Certificates a caregiver may hold, weakest first: a stronger one also covers the weaker
# qualifications (a nurse may do what a 养老护理员 does, a doctor what a nurse does).
QUALIFICATIONS = ("nursing_assistant", "nurse", "doctor")
CERTIFICATE_KINDS = {"nursing_assistant": "养老护理员证", "nurse": "护士执业证书", "doctor": "医师执业证书"}

_HARDSHIP = ["extreme_poverty_centralised", "extreme_poverty_dispersed", "minimum_allowance", "low_income",
             "severe_disability", "dementia", "family_planning_special"]
_NEEDS_CARE = {"ability_level_min": 1}

# code: (unit, base price fen, minutes per unit, qualification or None, eligibility rule)
MENU_TERMS: dict[str, tuple[str, int, int, str | None, dict]] = {
    "meal": ("meal", 1200, 30, None, {}),
    "meal_delivery": ("meal", 1800, 15, None, {}),
    "cleaning": ("hour", 4000, 60, None, {}),
    "bathing": ("visit", 6000, 60, "nursing_assistant", _NEEDS_CARE),
    "mobility": ("hour", 3500, 60, "nursing_assistant", _NEEDS_CARE),
    "medical_escort": ("visit", 8000, 120, "nursing_assistant", {}),
    "recreation": ("session", 1000, 60, None, {}),
    "home_doctor_visit": ("visit", 5000, 30, "doctor", {}),
    "health_management": ("session", 3000, 30, "nurse", {}),
    "nursing_care": ("visit", 8000, 60, "nurse",
                     {"any": [{"ability_level_min": 2}, {"categories_any": ["severe_disability"]}]}),
    "medicine_delivery": ("visit", 1000, 20, None, {}),
    "rehab_training": ("session", 6000, 60, "nurse", _NEEDS_CARE),
    "hospice_care": ("visit", 12000, 120, "nurse", {"ability_level_min": 3}),
    "health_education": ("session", 500, 60, None, {}),
    "tcm_checkup": ("session", 5000, 45, "doctor", {}),
    "health_assessment": ("session", 4000, 45, "nurse", {}),
    "emotional_support": ("hour", 3000, 60, None, {}),
    "visit": ("visit", 2000, 30, None, {"any": [{"living_arrangement_in": ["alone", "empty_nest"]},
                                                 {"categories_any": _HARDSHIP}, {"age_min": 80}]}),
    "day_care": ("session", 6000, 480, "nursing_assistant", _NEEDS_CARE),
    "respite_care": ("session", 15000, 1440, "nursing_assistant", {"ability_level_min": 2}),
    "home_adaptation": ("session", 50000, 240, None, {"any": [_NEEDS_CARE, {"age_min": 80},
                                                                {"categories_any": _HARDSHIP}]}),
    "family_bed_service": ("visit", 8000, 60, "nursing_assistant", {"family_bed": True}),
}


@dataclass(frozen=True, slots=True)
class MenuItem:
    code: str
    name_zh: str
    name_en: str
    category: str  # GB/T 43153-2023 content category
    unit: str
    base_price_fen: int
    minutes_per_unit: int
    qualification: str | None
    eligibility: dict


@cache
def load_menu(path: Path = CATEGORIES_PATH) -> tuple[MenuItem, ...]:
    """The menu in the reference file's order; a code without terms here is a programming error."""
    items = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            unit, price, minutes, qualification, rule = MENU_TERMS[row["code"]]
            items.append(MenuItem(row["code"], row["name_zh"], row["name_en"], row["category_gbt43153"], unit,
                                  price, minutes, qualification, rule))
    return tuple(items)


def qualification_covers(held: str, needed: str | None) -> bool:
    if needed is None:
        return True
    return QUALIFICATIONS.index(held) >= QUALIFICATIONS.index(needed)


def certificates_allow(certificates: list[tuple[str, date | None]], needed: str | None, day: date) -> bool:
    """True when one certificate valid on `day` (no expiry, or expiring on or after it) covers the need."""
    if needed is None:
        return True
    return any(qualification_covers(kind, needed) and (expires is None or expires >= day)
               for kind, expires in certificates)
