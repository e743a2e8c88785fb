"""Request bodies of the orders API (responses are the views built in handlers.py)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


# Text PostgreSQL cannot store (a NUL) is refused for every body and query by shared/http.py's
# middleware before a handler runs.
Text = str
Name = Annotated[Text, Field(min_length=1, max_length=200)]
Code = Annotated[Text, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Reason = Annotated[Text, Field(min_length=2, max_length=1000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Offer(_Body):
    service_code: Code
    price_fen: int = Field(ge=0, le=10_000_000)
    daily_capacity: int = Field(ge=1, le=100_000)


class ProviderIn(_Body):
    id: Code | None = None
    name: Name
    provider_type: Literal["street_centre", "daycare_centre", "township_home", "institution", "company"]
    county_code: Code
    items: list[Offer] = Field(default_factory=list, max_length=50)


class ProviderPatch(_Body):
    name: Name | None = None
    provider_type: Literal["street_centre", "daycare_centre", "township_home", "institution", "company"] | None = None
    active: bool | None = None
    items: list[Offer] | None = Field(None, max_length=50)


class CertificateIn(_Body):
    kind: Literal["nursing_assistant", "nurse", "doctor"]
    level: Annotated[Text, Field(max_length=20)] | None = None
    number: Annotated[Text, Field(min_length=1, max_length=64)]
    expires_on: date | None = None


class CaregiverIn(_Body):
    id: Code | None = None
    provider_id: Code
    name: Name
    phone: Annotated[Text, Field(max_length=20, pattern=r"^[0-9+\- ]+$")] | None = None
    service_area: list[Name] = Field(default_factory=list, max_length=100)
    certificates: list[CertificateIn] = Field(default_factory=list, max_length=20)


class CaregiverPatch(_Body):
    name: Name | None = None
    phone: Annotated[Text, Field(max_length=20, pattern=r"^[0-9+\- ]+$")] | None = None
    service_area: list[Name] | None = Field(None, max_length=100)
    active: bool | None = None
    certificates: list[CertificateIn] | None = Field(None, max_length=20)


class PolicyIn(_Body):
    scope: Code = Field(description='"city" or a county code (an override)')
    effective_from: date
    effective_to: date | None = None
    benefits: list[dict] | None = Field(None, max_length=100)
    budgets: dict[str, int] | None = None
    note: Annotated[Text, Field(max_length=1000)] | None = None


class OrderItemIn(_Body):
    service_code: Code
    quantity: int = Field(ge=1, le=48)


class OrderIn(_Body):
    resident_id: uuid.UUID
    provider_id: Code
    items: list[OrderItemIn] = Field(min_length=1, max_length=10)
    scheduled_start: AwareDatetime
    channel: Literal["caregiver_app", "provider", "county_operator", "hotline"]
    call_reference: Annotated[Text, Field(max_length=64)] | None = None


class ReasonIn(_Body):
    reason: Reason


class AssignIn(_Body):
    caregiver_id: Code


class VisitIn(_Body):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(ge=0, le=500)
    time: AwareDatetime | None = Field(None, description="when it happened on the device (default: now)")


class CheckOutIn(VisitIn):
    exception_reason: Reason | None = None


class RateIn(_Body):
    rating: int = Field(ge=1, le=5)
    comment: Annotated[Text, Field(max_length=1000)] | None = None


class ConfirmIn(_Body):
    note: Annotated[Text, Field(max_length=1000)] | None = None


class CloseMonthIn(_Body):
    county_code: Code
    month: Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
