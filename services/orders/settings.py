"""The orders service's own settings (environment variables ORDERS_*), beside the platform's."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.orders.domain.schedule import Timers


class OrdersSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERS_", env_file=".env", extra="ignore")

    # An order not accepted this long after it was placed (or by its scheduled start) expires.
    accept_within_minutes: int = Field(120, ge=1)
    # No check-in by the scheduled start plus this grace (US EVV practice: 10-15 min) counts as late.
    grace_minutes: int = Field(10, ge=10, le=15)
    # No check-in this long after the scheduled start is a no-show (late steps at 15/30/60 come first).
    no_show_after_minutes: int = Field(90, ge=75)
    geofence_m: float = Field(150.0, gt=0, le=1000)
    # A visit shorter than this share of the booked time is an exception.
    short_visit_share: float = Field(0.5, gt=0, le=1)
    # Reported GPS accuracy worse than this is refused (a fix that vague verifies nothing).
    max_accuracy_m: float = Field(500.0, gt=0)
    max_days_ahead: int = Field(90, ge=1)
    scheduler_interval_s: float = Field(2.0, gt=0)
    scheduler_batch: int = Field(500, ge=1)

    @property
    def timers(self) -> Timers:
        return Timers(accept_within=timedelta(minutes=self.accept_within_minutes),
                      grace=timedelta(minutes=self.grace_minutes),
                      no_show_after=timedelta(minutes=self.no_show_after_minutes))


@lru_cache
def get_orders_settings() -> OrdersSettings:
    return OrdersSettings()
