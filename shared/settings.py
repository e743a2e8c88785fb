"""Platform settings: one object, read from the environment (and `.env`), never os.environ elsewhere."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES: tuple[str, ...] = ("registry", "orders", "alerts", "reporting")
DEV_JWT_SECRET = "dev-only-secret-change-me-in-production-0123456789"


class PlatformSettings(BaseSettings):
    """Everything configurable by environment variables (names are the field names, upper-case)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # "development" allows the built-in JWT secret; anything else refuses it.
    eldercare_env: str = "development"
    eldercare_state_dir: Path = Path(".state")

    # Empty means "start the embedded one" (the launcher fills these in for its children).
    database_url: str = ""
    kafka_bootstrap_servers: str = ""
    kafka_partitions: int = Field(8, ge=1, le=256)
    kafka_replication_factor: int = Field(1, ge=1)

    service_host: str = "127.0.0.1"
    registry_port: int = 8001
    orders_port: int = 8002
    alerts_port: int = 8003
    reporting_port: int = 8004
    broker_port: int = 9092

    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "eldercare"
    jwt_ttl_seconds: int = 8 * 3600

    # The embedded broker's resident memory budget (its memory engine keeps every record): above it the
    # launcher's supervisor rolls the broker (stop, start empty, recreate topics; the relays replay
    # their retained outbox), at most once per BROKER_ROLL_MIN_INTERVAL_S. 0: no budget.
    broker_memory_budget_mb: int = Field(2048, ge=0)
    broker_roll_min_interval_s: float = Field(600.0, ge=0)

    outbox_retention_days: float = 7.0
    # Outbox retention of the ingest topic (device telemetry): what a replay after a broker loss
    # re-sends of it (see shared/messaging/topics.py).
    outbox_telemetry_retention_hours: float = Field(6.0, gt=0)
    outbox_batch_size: int = Field(2000, ge=1)
    relay_check_interval_s: float = 2.0
    consumer_batch_size: int = Field(1000, ge=1)

    # HTTP worker processes of the registry (reads at 1,000/s need more than one core's worth of
    # Python). The other services run one: reporting's live stream lives in its consumer's process.
    registry_workers: int = Field(2, ge=1, le=32)
    # Residents of the synthetic city `make up` seeds on its first start (0: none).
    seed_residents: int = Field(700_000, ge=0)
    # Events a second the county platform simulator posts after `make up` (0: no simulator).
    simulator_events_per_s: float = Field(50.0, ge=0, le=20_000)
    # When false, a service process serves HTTP only and `eldercare worker` runs its relay/consumers.
    run_workers_in_api: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    db_pool_size: int = 10

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> "PlatformSettings":
        if self.eldercare_env != "development" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError("JWT_SECRET must be set outside development (ELDERCARE_ENV != development)")
        if len(self.jwt_secret) < 32:
            raise ValueError("JWT_SECRET must be at least 32 characters")
        return self

    def port_of(self, service: str) -> int:
        """The HTTP port a service listens on."""
        return int(getattr(self, f"{service}_port"))


@lru_cache
def get_settings() -> PlatformSettings:
    """The process-wide settings (cached; tests clear the cache after changing the environment)."""
    return PlatformSettings()
