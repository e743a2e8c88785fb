"""Alembic environment of the reporting schema. Most of its tables are plain DDL in the migrations;
the order and alert facts are SQLModel models (service_store.py): `eldercare revision reporting
"message"` compares those with the database (tables the models do not declare are left alone)."""

from services.reporting.service_store import metadata
from shared.migrations import run_env

run_env(metadata)
