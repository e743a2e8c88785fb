"""What county platforms post to the registry's ingest gateway (SPEC §3, county event types).

The gateway forwards accepted events on topic eldercare.registry.ingest.v1, keyed by resident,
with `data.id_number` replaced by the resident id (never forwarded in clear).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A county may name the resident by ID number instead of subject; the gateway resolves it.
    id_number: str | None = Field(None, min_length=18, max_length=18)


class _Located(_Data):
    device_id: str = Field(min_length=1, max_length=100)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class DeviceSos(_Located):
    """An SOS button press on a resident's device."""


class DeviceFall(_Located):
    """A fall detected by a resident's device."""

    confidence: float | None = Field(None, ge=0, le=1)


class DeviceVitals(_Data):
    """Vital signs measured by a resident's device; at least one measurement."""

    device_id: str = Field(min_length=1, max_length=100)
    heart_rate: int | None = Field(None, ge=0, le=300)
    spo2: int | None = Field(None, ge=0, le=100)
    systolic: int | None = Field(None, ge=0, le=300)
    diastolic: int | None = Field(None, ge=0, le=250)
    temperature: float | None = Field(None, ge=25, le=45)

    @model_validator(mode="after")
    def _one_measurement(self) -> "DeviceVitals":
        if (self.heart_rate is None and self.spo2 is None and self.systolic is None and self.diastolic is None
                and self.temperature is None):
            raise ValueError("at least one of heart_rate, spo2, systolic, diastolic, temperature is required")
        return self


class DeviceActivity(_Data):
    """A sign of life from a home sensor (heartbeat, motion, door, water, power)."""

    device_id: str = Field(min_length=1, max_length=100)
    kind: Literal["heartbeat", "motion", "door", "water", "power"]


class DeviceAlarm(_Located):
    """A wearable's own alarm code (vendor codes such as SOS, FALL, OFF_WRIST, LOW_BATTERY, TAMPER,
    SOS_CANCEL, IRREGULAR_RHYTHM); the alerts service's rules map codes to causes and severities."""

    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Z0-9_]+$")


class DeviceLocation(_Data):
    """A position fix from a resident's wearable or phone (WGS-84), sent every few minutes; the alerts
    service checks it against the resident's safe zone (geofence)."""

    device_id: str = Field(min_length=1, max_length=100)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    # The fix's reported horizontal accuracy (radius, metres), when the device gives one.
    accuracy_m: float | None = Field(None, ge=0, le=10_000)


class VisitLogged(_Data):
    """A visit (home, phone or video) made to a resident by county staff or volunteers."""

    visitor: str = Field(min_length=1, max_length=100)
    kind: Literal["home", "phone", "video"]
    at: datetime
    notes: str | None = Field(None, max_length=2000)


FacilityType = Literal[
    "county_special_care", "street_center", "daycare_center", "township_home", "happiness_home", "institution"
]


class FacilityReported(_Data):
    """The current state of an elder-care facility in the county (beds, nursing beds, occupancy)."""

    facility_id: str = Field(min_length=1, max_length=100)
    facility_type: FacilityType
    name: str = Field(min_length=1, max_length=200)
    beds: int = Field(ge=0)
    nursing_beds: int = Field(ge=0)
    occupied: int = Field(ge=0)

    @model_validator(mode="after")
    def _beds_consistent(self) -> "FacilityReported":
        if self.nursing_beds > self.beds:
            raise ValueError("nursing_beds cannot exceed beds")
        if self.occupied > self.beds:
            raise ValueError("occupied cannot exceed beds")
        return self


class TrainingRecorded(_Data):
    """Staff training delivered (person-times)."""

    course: str = Field(min_length=1, max_length=200)
    trainees: int = Field(ge=0)


class FamilyBedEstablished(_Data):
    """A family elder-care bed set up in the resident's home (the resident is the subject)."""


class ResidentUpserted(_Data):
    """A resident record as the county platform holds it (the resident fields of SPEC §2)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50)
    phone: str | None = Field(None, max_length=20)
    county_code: str = Field(min_length=6, max_length=6)
    township: str = Field(min_length=1, max_length=50)
    village: str = Field(min_length=1, max_length=50)
    address: str | None = Field(None, max_length=200)
    # Codes or the Chinese words (alone 独居 …), as in the county import template; the registry
    # normalises them.
    living_arrangement: str = Field(min_length=1, max_length=20)
    categories: list[str] = Field(default_factory=list, max_length=7)
    ability_level: int | None = Field(None, ge=0, le=4)
    emergency_contact: str | None = Field(None, max_length=50)
    emergency_phone: str | None = Field(None, max_length=20)
    # The home's location (WGS-84 decimal degrees), both or neither; left out, the registry keeps
    # the one it has.
    home_lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    home_lon: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)
    # The family-doctor contract (家庭医生签约) and the day it was signed; left out, the registry
    # keeps what it has recorded.
    family_doctor_contract: bool | None = None
    family_doctor_signed_on: date | None = None


COUNTY_EVENTS: dict[str, type[BaseModel]] = {
    "eldercare.county.device.sos.v1": DeviceSos,
    "eldercare.county.device.fall.v1": DeviceFall,
    "eldercare.county.device.vitals.v1": DeviceVitals,
    "eldercare.county.device.activity.v1": DeviceActivity,
    "eldercare.county.device.alarm.v1": DeviceAlarm,
    "eldercare.county.device.location.v1": DeviceLocation,
    "eldercare.county.visit.logged.v1": VisitLogged,
    "eldercare.county.facility.reported.v1": FacilityReported,
    "eldercare.county.training.recorded.v1": TrainingRecorded,
    "eldercare.county.family_bed.established.v1": FamilyBedEstablished,
    "eldercare.county.resident.upserted.v1": ResidentUpserted,
}

# Events about a place or the county itself rather than one resident.
COUNTY_LEVEL_TYPES = frozenset({"eldercare.county.facility.reported.v1", "eldercare.county.training.recorded.v1"})
