"""The alerts service's own settings (environment variables ALERTS_*), beside the platform's."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AlertsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALERTS_", env_file=".env", extra="ignore")

    # The SMS/voice gateway emergency contacts are notified through (an HTTP endpoint taking one JSON
    # message per call, signed like the webhooks when a secret is set). Unset: every attempt fails,
    # visibly, with that reason.
    notify_url: str | None = None
    notify_secret: str | None = Field(None, min_length=24)
    notify_timeout_s: float = Field(5.0, gt=0, le=60)
    # Attempts per contact before the next contact in the resident's calling order is tried.
    notify_max_attempts: int = Field(4, ge=1, le=20)
    # Retries after 2 s, 4 s, 8 s … (capped at 5 minutes): a family's phone must ring within the minute.
    notify_first_retry_s: float = Field(2.0, gt=0, le=600)
    # Alert history: resolved alerts (with their timeline and notifications) older than this go;
    # webhook deliveries (delivered or dead) and ended orders sooner. Open alerts and the audit log stay.
    history_retention_days: float = Field(400.0, gt=0)
    delivery_retention_days: float = Field(30.0, gt=0)
    order_retention_days: float = Field(30.0, gt=0)
    history_prune_interval_s: float = Field(3600.0, gt=0)
    history_prune_batch: int = Field(1000, ge=1, le=100_000)


@lru_cache
def get_alerts_settings() -> AlertsSettings:
    return AlertsSettings()
