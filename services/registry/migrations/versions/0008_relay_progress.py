"""The registry schema's relay progress: a replay after a broker loss survives a relay restart; the
outbox is pruned per topic.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

from shared.messaging.schema import RELAY_PROGRESS_DDL, RELAY_PROGRESS_DROP, statements

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(RELAY_PROGRESS_DDL):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(RELAY_PROGRESS_DROP):
        op.execute(statement)
