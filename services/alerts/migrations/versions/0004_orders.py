"""The orders alerts watch: each order's schedule, state, caregiver and lateness timer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

from shared.messaging.schema import statements

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE orders (
    order_id          text PRIMARY KEY,
    resident_id       uuid,
    county_code       text        NOT NULL,
    service_code      text,
    provider_id       text,
    scheduled_start   timestamptz,
    scheduled_minutes integer,
    state             text        NOT NULL,
    caregiver_id      text,
    checked_in_at     timestamptz,
    lat               double precision,
    lon               double precision,
    late_level        integer     NOT NULL DEFAULT 0,
    late_check_at     timestamptz
);
CREATE INDEX orders_late_due ON orders (late_check_at) WHERE late_check_at IS NOT NULL;
CREATE INDEX orders_checked_in ON orders (caregiver_id) WHERE state = 'checked_in'
"""


def upgrade() -> None:
    for statement in statements(DDL):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS orders")
