"""Ingest de-duplication scoped to the county: the claim key becomes (county_code, source, event_id).

`source` is whatever the caller writes, so a key of (source, event_id) let one county claim the ids
another county would use and have that county's events (an SOS among them) answered `duplicate`
and never forwarded. The county is bound to the token (a county token may post only its own
county's events), so keying on it scopes every claim to the county that made it. Existing rows
already carry their county; a key over more columns stays unique.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE ingest_events DROP CONSTRAINT ingest_events_pkey, "
               "ADD PRIMARY KEY (county_code, source, event_id)")


def downgrade() -> None:
    # Two counties' claims of one (source, id) cannot both survive the narrower key: the later goes.
    op.execute("DELETE FROM ingest_events a USING ingest_events b WHERE a.source = b.source "
               "AND a.event_id = b.event_id AND (a.received_at, a.county_code) > (b.received_at, b.county_code)")
    op.execute("ALTER TABLE ingest_events DROP CONSTRAINT ingest_events_pkey, ADD PRIMARY KEY (source, event_id)")
