"""The family-doctor contract (家庭医生签约) and the day it was signed: resident fields. A date
needs a contract (the API and the import refuse it otherwise; the table too).

Revision ID: 0009_family_doctor
Revises: 0008
Create Date: 2026-12-02
"""

from alembic import op

revision = "0009_family_doctor"
down_revision = "0008"  # 0008_relay_progress.py
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE residents ADD COLUMN family_doctor_contract boolean NOT NULL DEFAULT false, "
               "ADD COLUMN family_doctor_signed_on date, "
               "ADD CONSTRAINT residents_family_doctor_date_needs_contract "
               "CHECK (family_doctor_signed_on IS NULL OR family_doctor_contract)")


def downgrade() -> None:
    op.execute("ALTER TABLE residents DROP CONSTRAINT residents_family_doctor_date_needs_contract, "
               "DROP COLUMN family_doctor_signed_on, DROP COLUMN family_doctor_contract")
