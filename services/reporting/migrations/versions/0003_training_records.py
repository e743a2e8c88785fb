"""Training records by event id: the totals add each record once, whoever delivers it again (a
re-publish job sends the registry's training records with their first ids, long after the inbox
may have let those ids go).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""CREATE TABLE training_records (
        event_id    text   PRIMARY KEY,
        county_code text   NOT NULL,
        trainees    bigint NOT NULL CHECK (trainees >= 0)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS training_records")
