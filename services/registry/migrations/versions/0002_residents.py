"""Residents, assessments, the audit log, import jobs, idempotency keys, ingest de-duplication.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

from shared.idempotency import IDEMPOTENCY_DDL
from shared.messaging.schema import statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE residents (
    id                 uuid PRIMARY KEY,
    id_number          text        NOT NULL UNIQUE,
    name               text        NOT NULL,
    phone              text,
    county_code        text        NOT NULL,
    township           text        NOT NULL,
    village            text        NOT NULL,
    address            text,
    living_arrangement text        NOT NULL,
    categories         text[]      NOT NULL DEFAULT '{}',
    ability_level      smallint CHECK (ability_level BETWEEN 0 AND 4),
    emergency_contact  text,
    emergency_phone    text,
    birth_date         date        NOT NULL,
    gender             text        NOT NULL,
    status             text        NOT NULL DEFAULT 'active',
    family_bed         boolean     NOT NULL DEFAULT false,
    date_of_death      date,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX residents_county_id ON residents (county_code, id);
CREATE INDEX residents_county_place ON residents (county_code, township, village);
CREATE INDEX residents_county_birth ON residents (county_code, birth_date);
CREATE INDEX residents_name ON residents (name text_pattern_ops);
CREATE INDEX residents_categories ON residents USING gin (categories);
CREATE INDEX residents_county_level ON residents (county_code, ability_level);

CREATE TABLE assessments (
    id          uuid PRIMARY KEY,
    resident_id uuid        NOT NULL REFERENCES residents (id),
    level       smallint    NOT NULL CHECK (level BETWEEN 0 AND 4),
    total_score smallint CHECK (total_score BETWEEN 0 AND 90),
    items       jsonb,
    reason      text        NOT NULL,
    assessor    text        NOT NULL,
    assessed_on date        NOT NULL,
    notes       text,
    recorded_by text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assessments_resident ON assessments (resident_id, assessed_on);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    role        text        NOT NULL,
    county_code text,
    action      text        NOT NULL,
    resident_id uuid,
    fields      text[]      NOT NULL DEFAULT '{}',
    reason      text        NOT NULL,
    trace_id    text
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_resident ON audit_log (resident_id);

CREATE TABLE import_jobs (
    id           uuid PRIMARY KEY,
    county_code  text,
    actor        text        NOT NULL,
    filename     text,
    file_sha256  text        NOT NULL,
    status       text        NOT NULL DEFAULT 'queued',
    total_rows   integer     NOT NULL DEFAULT 0,
    processed    integer     NOT NULL DEFAULT 0,
    accepted     integer     NOT NULL DEFAULT 0,
    updated      integer     NOT NULL DEFAULT 0,
    unchanged    integer     NOT NULL DEFAULT 0,
    rejected     integer     NOT NULL DEFAULT 0,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

CREATE TABLE import_errors (
    job_id  uuid    NOT NULL REFERENCES import_jobs (id) ON DELETE CASCADE,
    row_no  integer NOT NULL,
    column_name text NOT NULL,
    value   text,
    message text    NOT NULL
);
CREATE INDEX import_errors_job ON import_errors (job_id, row_no);

CREATE TABLE ingest_events (
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    county_code text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
)
"""


def upgrade() -> None:
    for statement in statements(DDL) + [IDEMPOTENCY_DDL]:
        op.execute(statement)


def downgrade() -> None:
    for table in ("ingest_events", "idempotency_keys", "import_errors", "import_jobs", "audit_log",
                  "assessments", "residents"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
