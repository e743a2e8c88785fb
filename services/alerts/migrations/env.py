"""Alembic environment of the alerts schema."""

from shared.migrations import run_env

run_env()
