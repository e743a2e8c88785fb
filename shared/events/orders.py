"""Events of the orders service's order stream (topic eldercare.orders.orders.v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str
    resident_id: str
    county_code: str


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_code: str
    quantity: int = Field(gt=0)
    unit_price_fen: int = Field(ge=0)


class Funding(BaseModel):
    """An order's price split by funding source, integer fen (they add up to the price)."""

    model_config = ConfigDict(extra="forbid")

    government_fen: int = Field(ge=0)
    collective_fen: int = Field(ge=0)
    social_fen: int = Field(ge=0)
    personal_fen: int = Field(ge=0)


class OrderPlaced(_Data):
    """Emitted when a service order is placed from the menu. `service_code` is the first item's
    (orders may hold several items: `items`)."""

    service_code: str
    provider_id: str
    scheduled_start: datetime
    scheduled_minutes: int = Field(gt=0)
    price_fen: int = Field(ge=0)
    items: list[OrderItem] | None = None
    channel: Literal["caregiver_app", "provider", "county_operator", "hotline"] | None = None
    funding: Funding | None = None
    policy_ref: str | None = None


class OrderStateChanged(_Data):
    """Emitted on every later transition (accepted, assigned, checked-in, completed, rated, cancelled,
    rejected, expired, no-show), when a visit is late (`late_minutes` 15, 30 or 60 past the grace
    period) and when a county confirms a visit that was an EVV exception (visit_confirmed)."""

    state: str
    previous_state: str
    at: datetime
    caregiver_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    rating: int | None = Field(None, ge=1, le=5)
    reason: str | None = None
    provider_id: str | None = None
    late_minutes: int | None = Field(None, ge=0)
    accuracy_m: float | None = Field(None, ge=0)
    distance_m: float | None = Field(None, ge=0)
    actual_minutes: float | None = Field(None, ge=0)
    evv_status: Literal["verified", "exception", "confirmed"] | None = None
    evv_exceptions: list[str] | None = None


class OrderSettled(_Data):
    """Emitted when a completed order becomes payable (visit verified, or an exception confirmed):
    its price split by funding source (integer fen) and the statement month it is paid in."""

    government_fen: int = Field(ge=0)
    collective_fen: int = Field(ge=0)
    donation_fen: int = Field(ge=0)
    personal_fen: int = Field(ge=0)
    provider_id: str | None = None
    price_fen: int | None = Field(None, ge=0)
    month: str | None = Field(None, pattern=r"^\d{4}-\d{2}$")
    adjustment: bool | None = None


ORDER_EVENTS: dict[str, type[BaseModel]] = {
    "eldercare.order.placed.v1": OrderPlaced,
    **{
        f"eldercare.order.{state}.v1": OrderStateChanged
        for state in (
            "accepted", "assigned", "checked_in", "completed", "rated",
            "cancelled", "rejected", "expired", "no_show", "late", "visit_confirmed",
        )
    },
    "eldercare.order.settled.v1": OrderSettled,
}
