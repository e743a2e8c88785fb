"""Request bodies of the alerts API (the answers are documented dicts built by api/deps.present)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from shared.events.alerts import DispatchTarget, Resolution


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AckBody(_Body):
    note: str | None = Field(None, max_length=500)


class DispatchBody(_Body):
    targets: list[DispatchTarget] = Field(min_length=1, max_length=6)
    note: str | None = Field(None, max_length=500)


class ResolveBody(_Body):
    resolution: Resolution
    note: str | None = Field(None, max_length=1000)


class EscalateBody(_Body):
    note: str | None = Field(None, max_length=500)


class SilenceBody(_Body):
    county_code: str = Field(min_length=6, max_length=6, pattern=r"^\d{6}$")
    cause: str | None = Field(None, min_length=1, max_length=50)
    resident_id: str | None = Field(None, max_length=64)
    device_id: str | None = Field(None, max_length=100)
    owner: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=500)
    starts_at: datetime | None = None
    # Never open-ended: an expiry is required, at most 30 days ahead.
    expires_at: datetime


class SubscriptionBody(_Body):
    url: HttpUrl
    county_code: str | None = Field(None, min_length=6, max_length=6, pattern=r"^\d{6}$")
    severities: list[str] = Field(default_factory=lambda: ["critical", "warning"], min_length=1)
    secret: str | None = Field(None, min_length=24, max_length=200)


class RulesBody(_Body):
    rules: dict
    note: str | None = Field(None, max_length=500)
    # Optimistic concurrency: the version the editor started from.
    base_version: int | None = Field(None, ge=1)


class ContactEntry(_Body):
    name: str = Field(min_length=1, max_length=50)
    relation: str | None = Field(None, min_length=1, max_length=20, description="子女, 配偶, 邻居 …")
    # Mobile or landline: digits, optionally +86 first, spaces or dashes between groups.
    phone: str = Field(min_length=5, max_length=24, pattern=r"^\+?[0-9][0-9 \-]{3,22}[0-9]$")


class ContactsBody(_Body):
    """The resident's emergency contacts in calling order (the first is called first)."""

    contacts: list[ContactEntry] = Field(max_length=5)


class GeofenceBody(_Body):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(ge=50, le=50_000)
    # Only this device's fixes count (a resident with a phone and a wearable), if given.
    device_id: str | None = Field(None, min_length=1, max_length=100)
    note: str | None = Field(None, max_length=500)
