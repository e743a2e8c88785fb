"""The resident's home location (WGS-84 decimal degrees, both or neither), for the orders service's
visit verification: carried in the resident events' snapshots.

Revision ID: 0009b_home_location
Revises: 0009_family_doctor
Create Date: 2026-12-02
"""

from alembic import op

revision = "0009b_home_location"
down_revision = "0009_family_doctor"  # 0009_family_doctor.py
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without a default: no table rewrite, even on 700k residents.
    op.execute("ALTER TABLE residents ADD COLUMN home_lat double precision, ADD COLUMN home_lon double precision")
    op.execute("ALTER TABLE residents ADD CONSTRAINT residents_home_location CHECK ("
               "(home_lat IS NULL) = (home_lon IS NULL) AND home_lat BETWEEN -90 AND 90 "
               "AND home_lon BETWEEN -180 AND 180)")


def downgrade() -> None:
    op.execute("ALTER TABLE residents DROP CONSTRAINT IF EXISTS residents_home_location")
    op.execute("ALTER TABLE residents DROP COLUMN IF EXISTS home_lat, DROP COLUMN IF EXISTS home_lon")
