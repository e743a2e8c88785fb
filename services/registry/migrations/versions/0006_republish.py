"""Re-publishing the registry's state: the snapshot jobs, and the county reports the registry keeps
so they can be sent again (the latest report per facility, every training record).

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

from shared.messaging.schema import statements
from shared.messaging.snapshots import SNAPSHOT_DDL

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE county_reports (
    event_id    text        PRIMARY KEY,
    county_code text        NOT NULL,
    type        text        NOT NULL,
    key         text        NOT NULL,
    facility_id text,
    reported_at timestamptz NOT NULL,
    payload     bytea       NOT NULL
);
CREATE UNIQUE INDEX county_reports_facility ON county_reports (county_code, facility_id)
    WHERE facility_id IS NOT NULL
"""


def upgrade() -> None:
    for statement in statements(SNAPSHOT_DDL) + statements(DDL):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS county_reports")
    op.execute("DROP TABLE IF EXISTS snapshot_jobs")
