"""Below the county: reporting's projection of residents keeps each resident's township, village and
family-doctor contract, so township and village figures are counted from it (GET
/v1/aggregates/counties/{code}/townships). Residents folded before this have an empty township
until `eldercare replay reporting` rebuilds the projection (the counters gain the `family_doctor`
and `township` dimensions the same way).

Revision ID: 0006_townships
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006_townships"
down_revision = "0005"  # 0005_relay_progress.py
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE residents ADD COLUMN township text NOT NULL DEFAULT '', "
               "ADD COLUMN village text NOT NULL DEFAULT '', "
               "ADD COLUMN family_doctor_contract boolean NOT NULL DEFAULT false")
    # A county's townships are counted from its rows, a township's villages from its rows.
    op.execute("CREATE INDEX residents_area ON residents (county_code, township, village)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS residents_area")
    op.execute("ALTER TABLE residents DROP COLUMN family_doctor_contract, DROP COLUMN village, "
               "DROP COLUMN township")
