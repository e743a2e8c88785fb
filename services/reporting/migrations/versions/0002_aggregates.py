"""Reporting's projection of residents, its counters, facilities, training and the stream sequence.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

from shared.messaging.schema import statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE residents (
    resident_id        uuid PRIMARY KEY,
    county_code        text     NOT NULL,
    birth_date         date     NOT NULL,
    gender             text     NOT NULL,
    living_arrangement text     NOT NULL,
    categories         text[]   NOT NULL DEFAULT '{}',
    ability_level      smallint,
    status             text     NOT NULL,
    family_bed         boolean  NOT NULL DEFAULT false,
    version            integer  NOT NULL
);
CREATE TABLE agg_counts (
    county_code text   NOT NULL,
    dim         text   NOT NULL,
    bucket      text   NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (county_code, dim, bucket)
);
CREATE TABLE facilities (
    county_code   text        NOT NULL,
    facility_id   text        NOT NULL,
    facility_type text        NOT NULL,
    name          text        NOT NULL,
    beds          integer     NOT NULL CHECK (beds >= 0),
    nursing_beds  integer     NOT NULL CHECK (nursing_beds >= 0 AND nursing_beds <= beds),
    occupied      integer     NOT NULL CHECK (occupied >= 0),
    reported_at   timestamptz NOT NULL,
    PRIMARY KEY (county_code, facility_id)
);
CREATE TABLE training (
    county_code text   PRIMARY KEY,
    trainees    bigint NOT NULL CHECK (trainees >= 0),
    sessions    bigint NOT NULL
);
CREATE TABLE county_activity (
    county_code   text        PRIMARY KEY,
    events        bigint      NOT NULL,
    last_event_at timestamptz NOT NULL
);
CREATE TABLE stream_state (
    id  integer PRIMARY KEY CHECK (id = 1),
    seq bigint  NOT NULL
);
INSERT INTO stream_state VALUES (1, 0)
"""


def upgrade() -> None:
    for statement in statements(DDL):
        op.execute(statement)


def downgrade() -> None:
    for table in ("stream_state", "county_activity", "training", "facilities", "agg_counts", "residents"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
