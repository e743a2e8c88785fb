"""The orders and alerts topics folded: one fact row per order and per alert (service_store.py's
SQLModel tables), from which the figures per county and the city are computed after each fold and
kept in service_figures.

Revision ID: 0007
Revises: 0006_townships
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006_townships"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_facts",
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("county_code", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=True),
        sa.Column("service_code", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scheduled_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("evv_status", sa.String(), nullable=True),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=True),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.Column("government_fen", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("collective_fen", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("social_fen", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("personal_fen", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
        schema="reporting",
    )
    op.create_index("ix_reporting_order_facts_county_code", "order_facts", ["county_code"], schema="reporting")
    op.create_table(
        "alert_facts",
        sa.Column("alert_id", sa.String(), nullable=False),
        sa.Column("county_code", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=True),
        sa.Column("cause", sa.String(), nullable=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_seconds", sa.Float(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolve_seconds", sa.Float(), nullable=True),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("silenced", sa.Boolean(), nullable=False),
        sa.Column("closed_by_system", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id"),
        schema="reporting",
    )
    op.create_index("ix_reporting_alert_facts_county_code", "alert_facts", ["county_code"], schema="reporting")


    op.create_table(
        "service_figures",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("orders", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("alerts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
        schema="reporting",
    )


def downgrade() -> None:
    op.drop_table("service_figures", schema="reporting")
    op.drop_table("alert_facts", schema="reporting")
    op.drop_table("order_facts", schema="reporting")
