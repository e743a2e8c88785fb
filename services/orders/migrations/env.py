"""Alembic environment of the orders schema."""

from shared.migrations import run_env

run_env()
