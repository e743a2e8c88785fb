"""Platform settings: one object, read from the environment (and `.env`), never os.environ elsewhere."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES: tuple[str, ...] = ("registry", "orders", "alerts", "reporting")
# SHA-256 of secrets that were once written in this repository (the old built-in development
# secret): a deployment that copied one from the source or a .env example must not start with it.
# Kept as hashes so the list itself publishes nothing new.
PUBLISHED_SECRET_HASHES = frozenset({
    "99f8c413a0b81bbc5c4df63da8fa908910fe1d1fed286791730f62592b9e65b1",  # the old DEV_JWT_SECRET
    "ed38a598efa8dba0cbc2c01156c5a4e3661bf38ad256061a5e7b03cf7da4f782",  # the compose test's former fixed secret
})
MIN_SECRET_LENGTH = 32
# A secret of 32+ characters drawn from fewer distinct symbols than this is a typed placeholder
# ("x" * 40, "changeme" repeated), not a random value (32 random hex digits have fewer in less than
# one draw in 10^7).
MIN_SECRET_DISTINCT = 8


class MissingSecret(RuntimeError):
    """No JWT secret where one is needed (a service start, signing or verifying a token)."""


def secret_problem(secret: str) -> str | None:
    """Why this JWT secret must not be used, or None if it may."""
    if len(secret) < MIN_SECRET_LENGTH:
        return f"JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters"
    if len(set(secret)) < MIN_SECRET_DISTINCT:
        return "JWT_SECRET looks like a placeholder, not a random value"
    if hashlib.sha256(secret.encode()).hexdigest() in PUBLISHED_SECRET_HASHES:
        return "JWT_SECRET is a secret published in the project's source: generate your own"
    return None


class PlatformSettings(BaseSettings):
    """Everything configurable by environment variables (names are the field names, upper-case)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # A label for logs and operators; no environment unlocks a built-in secret (there is none).
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

    # No default: `eldercare up` generates one into the state folder and hands it to its children;
    # every other start (serve, compose, Kubernetes) must be given JWT_SECRET.
    jwt_secret: str = Field("", repr=False)
    jwt_issuer: str = "eldercare"
    # Tokens name who may accept them: the platform (every service) or one service.
    jwt_audience: str = "eldercare-platform"
    jwt_ttl_seconds: int = Field(8 * 3600, ge=1)
    # No token lives longer: `eldercare token` refuses more, the services refuse such tokens.
    jwt_max_ttl_seconds: int = Field(30 * 86400, ge=60)

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
    # Python). Alerts and reporting run one: reporting's live stream lives in its consumer's process.
    registry_workers: int = Field(2, ge=1, le=32)
    # HTTP worker processes of the orders service (placing orders is Python-bound past one core's
    # worth: docs/benchmarks.md). Its relay, consumer and scheduler lead by advisory lock or
    # consumer group, so several processes share them safely.
    orders_workers: int = Field(1, ge=1, le=32)
    # Residents of the synthetic city `make up` seeds on its first start (0: none).
    seed_residents: int = Field(700_000, ge=0)
    # Events a second the county platform simulator posts after `make up` (0: no simulator).
    simulator_events_per_s: float = Field(50.0, ge=0, le=20_000)
    # Simulated seconds per real second of the simulator's calendar (1: real time, so that after a
    # day of `make up` the year's figures have grown by a day's worth) and its orders a simulated day.
    simulator_compression: float = Field(1.0, gt=0, le=100_000)
    simulator_orders_per_day: float = Field(2000.0, ge=0, le=10_000_000)
    # When false, a service process serves HTTP only and `eldercare worker` runs its relay/consumers.
    run_workers_in_api: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    db_pool_size: int = 10
    # No API statement runs longer (PostgreSQL cancels it; the caller gets a 503). Imports lift it
    # for their own connection; 0 turns it off.
    db_statement_timeout_s: float = Field(30.0, ge=0)

    # A request waits at most this long for a pooled connection (PostgreSQL away: the connect attempt)
    # and this long for any one statement; past either it gets 503 with Retry-After.
    db_acquire_timeout_s: float = Field(5.0, gt=0, le=120)
    db_command_timeout_s: float = Field(30.0, gt=0, le=3600)
    # Inbox rows, idempotency keys and the registry's ingest event claims are kept this long, then
    # pruned (the audit log never is). Longer than OUTBOX_RETENTION_DAYS: a replay re-sends the
    # retained outbox, and each redelivered event must still find its inbox row.
    dedup_retention_days: float = Field(14.0, gt=0)
    prune_interval_s: float = Field(300.0, gt=0)
    prune_batch_size: int = Field(5000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _refuse_unsafe_secrets(self) -> "PlatformSettings":
        # Empty is allowed here (migrate, seed, asyncapi sign nothing); require_jwt_secret() is
        # what a service start and every signature or verification call.
        if self.jwt_secret and (problem := secret_problem(self.jwt_secret)):
            raise ValueError(problem)
        if self.jwt_ttl_seconds > self.jwt_max_ttl_seconds:
            raise ValueError("JWT_TTL_SECONDS must not exceed JWT_MAX_TTL_SECONDS")
        if self.dedup_retention_days <= self.outbox_retention_days:
            raise ValueError(
                f"DEDUP_RETENTION_DAYS ({self.dedup_retention_days:g}) must be longer than "
                f"OUTBOX_RETENTION_DAYS ({self.outbox_retention_days:g}): an event replayed from the "
                "outbox must still find its inbox row, or it would be applied twice")
        return self

    def require_jwt_secret(self) -> str:
        """The JWT secret, or MissingSecret saying how to provide one."""
        if not self.jwt_secret:
            raise MissingSecret(
                "JWT_SECRET is not set: a service never starts with a built-in secret. `make up` "
                "(`eldercare up`) generates one in its state folder; elsewhere set JWT_SECRET to a random "
                "value of 32+ characters, e.g. python -c \"import secrets; print(secrets.token_urlsafe(48))\"")
        return self.jwt_secret

    def port_of(self, service: str) -> int:
        """The HTTP port a service listens on."""
        return int(getattr(self, f"{service}_port"))


@lru_cache
def get_settings() -> PlatformSettings:
    """The process-wide settings (cached; tests clear the cache after changing the environment)."""
    return PlatformSettings()
