"""Alembic environment of the registry schema."""

from shared.migrations import run_env

run_env()
