"""The reporting schema's messaging tables: outbox, relay state, inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from shared.messaging.schema import MESSAGING_DDL, MESSAGING_DROP, statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements(MESSAGING_DDL):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(MESSAGING_DROP):
        op.execute(statement)
