"""Search reads the index, not the table: one covering index per county replaces three.

Counting residents that match a filter (county + living arrangement + ability level, county + name
prefix, …) fetched thousands of heap pages; an index on (county_code, id) that carries every
filterable column answers both the count and the id-ordered page by an index-only scan. It makes
(county_code, id), (county_code, birth_date) and (county_code, ability_level) redundant, and
fewer indexes also make imports cheaper. Extended statistics keep the planner's estimates of
correlated filters honest, so a sparse filter is not planned as a walk in id order.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

from shared.messaging.schema import statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


UPGRADE = """
CREATE INDEX residents_county_search ON residents (county_code, id)
    INCLUDE (township, village, living_arrangement, ability_level, birth_date, status, gender, categories, name);
DROP INDEX residents_county_id;
DROP INDEX residents_county_birth;
DROP INDEX residents_county_level;
CREATE STATISTICS residents_filter_stats (mcv, dependencies)
    ON county_code, living_arrangement, ability_level, status, gender FROM residents;
ANALYZE residents
"""

DOWNGRADE = """
DROP STATISTICS residents_filter_stats;
CREATE INDEX residents_county_id ON residents (county_code, id);
CREATE INDEX residents_county_birth ON residents (county_code, birth_date);
CREATE INDEX residents_county_level ON residents (county_code, ability_level);
DROP INDEX residents_county_search
"""


def upgrade() -> None:
    for statement in statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements(DOWNGRADE):
        op.execute(statement)
