"""Alembic environment of the orders schema. Its tables are the SQLModel models in store.py:
`eldercare revision orders "message"` (or alembic's autogenerate) compares them with the
database and writes the migration, which is reviewed and committed."""

from services.orders.store import metadata
from shared.migrations import run_env

run_env(metadata)
