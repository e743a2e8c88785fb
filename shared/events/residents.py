"""Events of the registry's resident stream (topic eldercare.registry.residents.v1)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LivingArrangement = Literal["alone", "empty_nest", "with_family", "institution"]
Category = Literal[
    "extreme_poverty_centralised",
    "extreme_poverty_dispersed",
    "minimum_allowance",
    "low_income",
    "severe_disability",
    "dementia",
    "family_planning_special",
]
Gender = Literal["male", "female"]
Status = Literal["active", "deceased", "transferred"]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResidentSnapshot(_Data):
    """What other services may know of a resident: no ID or phone number at all (a masked ID
    number together with the birth date would give the whole number back)."""

    resident_id: str
    county_code: str
    name: str
    birth_date: date
    gender: Gender
    township: str
    village: str
    living_arrangement: LivingArrangement
    categories: list[Category] = Field(default_factory=list)
    ability_level: int | None = Field(None, ge=0, le=4)
    status: Status = "active"
    family_bed: bool = False
    version: int = Field(1, ge=1)
    # Where the resident lives (WGS-84), for visit verification; absent until the registry knows it
    # (left out of the dump when unknown, so snapshots without it serialise exactly as before).
    home_lat: float | None = Field(None, ge=-90, le=90, exclude_if=lambda v: v is None)
    home_lon: float | None = Field(None, ge=-180, le=180, exclude_if=lambda v: v is None)
    # The family-doctor contract (家庭医生签约) and the day it was signed (None: not known); both left
    # out of the dump at their defaults, so snapshots of residents without one serialise as before.
    family_doctor_contract: bool = Field(False, exclude_if=lambda v: v is False)
    family_doctor_signed_on: date | None = Field(None, exclude_if=lambda v: v is None)


class ResidentRegistered(_Data):
    """Emitted when a resident is first registered (by API, import or a county platform)."""

    resident: ResidentSnapshot


class ResidentUpdated(_Data):
    """Emitted when a resident's record changes; carries the whole new snapshot and the changed fields."""

    resident: ResidentSnapshot
    changed: list[str] = Field(default_factory=list)


class ResidentAssessed(_Data):
    """Emitted when an ability assessment is recorded."""

    resident_id: str
    county_code: str
    assessment_id: str
    level: int = Field(ge=0, le=4)
    previous_level: int | None = Field(None, ge=0, le=4)
    total_score: int | None = Field(None, ge=0, le=90)
    reason: str
    assessed_on: date
    assessor: str


class ResidentDeceased(_Data):
    """Emitted when a resident's death is recorded."""

    resident_id: str
    county_code: str
    date_of_death: date


class ResidentTransferred(_Data):
    """Emitted when a resident moves from one county to another."""

    resident_id: str
    from_county: str
    to_county: str
    resident: ResidentSnapshot


class ResidentRepublished(_Data):
    """Emitted by a re-publish job (`POST /v1/admin/republish`): a resident's current snapshot, so a
    projection can be rebuilt whatever the broker kept. Applied by version like registered and
    updated: one the projection already holds at the same or a newer version changes nothing."""

    resident: ResidentSnapshot
    job_id: str | None = None


RESIDENT_EVENTS: dict[str, type[BaseModel]] = {
    "eldercare.resident.registered.v1": ResidentRegistered,
    "eldercare.resident.updated.v1": ResidentUpdated,
    "eldercare.resident.assessed.v1": ResidentAssessed,
    "eldercare.resident.deceased.v1": ResidentDeceased,
    "eldercare.resident.transferred.v1": ResidentTransferred,
    "eldercare.resident.snapshot.v1": ResidentRepublished,
}
