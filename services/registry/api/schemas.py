"""Request and response bodies of the registry API (field names as in SPEC §2)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LivingArrangement = Literal["alone", "empty_nest", "with_family", "institution"]
Category = Literal["extreme_poverty_centralised", "extreme_poverty_dispersed", "minimum_allowance", "low_income",
                   "severe_disability", "dementia", "family_planning_special"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResidentIn(_Strict):
    """A resident to register. Birth date, age and gender come from the ID number."""

    name: str = Field(min_length=1, max_length=50)
    id_number: str = Field(min_length=1, max_length=30)
    phone: str | None = Field(None, max_length=30)
    county_code: str = Field(min_length=1, max_length=12)
    township: str = Field(min_length=1, max_length=50)
    village: str = Field(min_length=1, max_length=50)
    address: str | None = Field(None, max_length=200)
    living_arrangement: str = Field(min_length=1, max_length=20, description="alone, empty_nest, with_family, institution (or 独居 空巢 与家人同住 机构)")
    categories: list[str] = Field(default_factory=list, max_length=7)
    ability_level: int | None = Field(None, ge=0, le=4)
    emergency_contact: str | None = Field(None, max_length=50)
    emergency_phone: str | None = Field(None, max_length=30)
    home_lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False,
                                   description="the home's latitude, WGS-84 decimal degrees (with home_lon)")
    home_lon: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False,
                                   description="the home's longitude, WGS-84 decimal degrees (with home_lat)")
    family_doctor_contract: bool = Field(False, description="has a family-doctor contract (家庭医生签约)")
    family_doctor_signed_on: date | None = Field(None, description="the day it was signed; needs a contract, "
                                                                   "not in the future")


class ResidentPatch(_Strict):
    """Fields a county may correct. County moves are transfers, deaths and levels have their own endpoints."""

    name: str | None = Field(None, min_length=1, max_length=50)
    phone: str | None = Field(None, max_length=30)
    township: str | None = Field(None, min_length=1, max_length=50)
    village: str | None = Field(None, min_length=1, max_length=50)
    address: str | None = Field(None, max_length=200)
    living_arrangement: str | None = Field(None, min_length=1, max_length=20)
    categories: list[str] | None = Field(None, max_length=7)
    emergency_contact: str | None = Field(None, max_length=50)
    emergency_phone: str | None = Field(None, max_length=30)
    family_bed: bool | None = None
    # Set together (both null clears the location).
    home_lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    home_lon: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)
    family_doctor_contract: bool | None = Field(None, description="false ends the contract and clears its date")
    family_doctor_signed_on: date | None = Field(None, description="needs a contract; not in the future")


class AssessmentIn(_Strict):
    """An ability assessment (GB/T 42195-2022): the 26 item scores, or only the resulting level."""

    assessor: str = Field(min_length=1, max_length=100)
    assessed_on: date
    reason: Literal["first", "routine", "immediate", "dispute", "other"]
    items: dict[str, int] | None = Field(None, description="item code (B1.1 … B4.5) → points")
    level: int | None = Field(None, ge=0, le=4)
    coma: bool = False
    diagnosed_mental_disorder: bool = False
    care_risk_events_30d: int = Field(0, ge=0, le=100)
    notes: str | None = Field(None, max_length=2000)


class DeathIn(_Strict):
    date_of_death: date


class TransferIn(_Strict):
    to_county: str = Field(min_length=1, max_length=12)
    township: str = Field(min_length=1, max_length=50)
    village: str = Field(min_length=1, max_length=50)
    address: str | None = Field(None, max_length=200)


class SearchIn(_Strict):
    """Filters (all optional, combined with AND). `id_number` looks one person up without putting
    the number in a URL: it needs a `reason`, is audited and rate-limited per caller. `reveal` with a
    `reason` shows numbers in clear (audited)."""

    county_code: str | None = Field(None, max_length=12)
    township: str | None = Field(None, max_length=50)
    village: str | None = Field(None, max_length=50)
    category: Category | None = None
    living_arrangement: LivingArrangement | None = None
    ability_level: int | list[int] | None = None
    age_min: int | None = Field(None, ge=0, le=130)
    age_max: int | None = Field(None, ge=0, le=130)
    status: Literal["active", "deceased", "transferred"] | None = None
    gender: Literal["male", "female"] | None = None
    name_prefix: str | None = Field(None, min_length=1, max_length=50)
    id_number: str | None = Field(None, min_length=1, max_length=30)
    family_doctor_contract: bool | None = Field(None, description="with (true) or without (false) a family-doctor "
                                                                  "contract, e.g. the 65+ still to sign")
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=512)
    with_total: bool = True
    reveal: bool = False
    reason: str | None = Field(None, max_length=500)
