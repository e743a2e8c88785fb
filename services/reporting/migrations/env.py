"""Alembic environment of the reporting schema."""

from shared.migrations import run_env

run_env()
