"""Events of the orders service's order stream (topic eldercare.orders.orders.v1)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str
    resident_id: str
    county_code: str


class OrderPlaced(_Data):
    """Emitted when a service order is placed from the menu."""

    service_code: str
    provider_id: str
    scheduled_start: datetime
    scheduled_minutes: int = Field(gt=0)
    price_fen: int = Field(ge=0)


class OrderStateChanged(_Data):
    """Emitted on every later transition (accepted, assigned, checked-in, completed, rated, cancelled, …)."""

    state: str
    previous_state: str
    at: datetime
    caregiver_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    rating: int | None = Field(None, ge=1, le=5)
    reason: str | None = None


class OrderSettled(_Data):
    """Emitted when a completed order's price is split by funding source (integer fen)."""

    government_fen: int = Field(ge=0)
    collective_fen: int = Field(ge=0)
    donation_fen: int = Field(ge=0)
    personal_fen: int = Field(ge=0)


ORDER_EVENTS: dict[str, type[BaseModel]] = {
    "eldercare.order.placed.v1": OrderPlaced,
    **{
        f"eldercare.order.{state}.v1": OrderStateChanged
        for state in (
            "accepted", "assigned", "checked_in", "completed", "rated",
            "cancelled", "rejected", "expired", "no_show",
        )
    },
    "eldercare.order.settled.v1": OrderSettled,
}
