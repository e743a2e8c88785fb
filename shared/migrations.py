"""Alembic per service: each service's `migrations/` folder, its own schema and version table."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import quote_ident, sqlalchemy_url

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def alembic_config(service: str, database_url: str) -> Config:
    """An Alembic config built in code (no alembic.ini to keep in step)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = service
    return cfg


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    """Bring a service's schema to `revision` (blocking: call from a thread inside an event loop)."""
    command.upgrade(alembic_config(service, database_url), revision)


def autogenerate(service: str, database_url: str, message: str, rev_id: str | None = None) -> None:
    """Write a migration from the difference between a service's models and its migrated schema
    (for services whose tables are SQLModel models; review the file before committing it)."""
    upgrade(service, database_url)
    command.revision(alembic_config(service, database_url), message=message, autogenerate=True, rev_id=rev_id)


async def upgrade_async(service: str, database_url: str) -> None:
    await asyncio.to_thread(upgrade, service, database_url)


def autogenerate_options(schema: str, models: bool = True) -> dict:
    """How autogenerate compares a service's models with its schema: this service's schema only,
    leaving alone the tables its models do not declare (outbox, inbox, relay_state,
    relay_progress, idempotency_keys: shared DDL) and other services' models loaded in the same process."""
    return {
        "include_schemas": models,
        "include_name": lambda name, type_, parent: type_ != "schema" or name == schema,
        "include_object": lambda obj, name, type_, reflected, compare_to: not (
            type_ == "table" and (reflected and compare_to is None or obj.schema not in (None, schema))),
    }


def run_env(target_metadata: MetaData | None = None) -> None:
    """The body of every service's migrations/env.py."""
    cfg = context.config
    schema = cfg.attributes["schema"]
    url = sqlalchemy_url(cfg.attributes["database_url"])

    def do_run(connection) -> None:
        # Serialise concurrent starts of the same service (replicas) on one advisory lock.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"migrate:{schema}"})
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}"))
        connection.execute(text(f"SET search_path TO {quote_ident(schema)}"))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            **autogenerate_options(schema, target_metadata is not None),
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(do_run)
        finally:
            await engine.dispose()

    asyncio.run(run_async())
