"""The alerts schema: the residents projection, readings' watermarks and vital-sign states, rules
(versioned), alerts and their timeline, silences, webhook subscriptions and deliveries.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import orjson
import sqlalchemy as sa
from alembic import op

from services.alerts.domain.rules import Rules
from shared.idempotency import IDEMPOTENCY_DDL
from shared.messaging.schema import statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DDL = """
CREATE TABLE residents (
    resident_id        uuid PRIMARY KEY,
    county_code        text        NOT NULL,
    name               text        NOT NULL,
    birth_date         date        NOT NULL,
    gender             text        NOT NULL,
    township           text        NOT NULL,
    village            text        NOT NULL,
    living_arrangement text        NOT NULL,
    categories         text[]      NOT NULL DEFAULT '{}',
    ability_level      smallint,
    status             text        NOT NULL,
    emergency_contact  text,
    version            integer     NOT NULL,
    care_since         timestamptz NOT NULL DEFAULT now(),
    visit_group        text,
    last_visit_at      timestamptz,
    visit_due_at       timestamptz,
    visit_warned_at    timestamptz
);
CREATE INDEX residents_visit_due ON residents (visit_due_at) WHERE visit_due_at IS NOT NULL;

-- One narrow row per resident heard from: the last reading (a watermark, so a redelivered reading
-- is recognised without an inbox row) and the no-activity timer of solitary elders. No index
-- beyond the key, so the per-batch update stays a HOT update.
CREATE TABLE signals (
    resident_id  uuid PRIMARY KEY,
    county_code  text        NOT NULL,
    last_at      timestamptz NOT NULL,
    last_id      text        NOT NULL,
    solitary     boolean     NOT NULL DEFAULT false,
    alerted_for  timestamptz
);

CREATE TABLE vital_states (
    resident_id uuid NOT NULL,
    metric      text NOT NULL,
    state       text NOT NULL CHECK (state IN ('low', 'high')),
    PRIMARY KEY (resident_id, metric)
);

CREATE TABLE rules (
    scope      text        NOT NULL,
    version    integer     NOT NULL CHECK (version >= 1),
    body       jsonb       NOT NULL,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    note       text,
    PRIMARY KEY (scope, version)
);

CREATE TABLE alerts (
    id               uuid PRIMARY KEY,
    county_code      text        NOT NULL,
    resident_id      uuid,
    device_id        text,
    cause            text        NOT NULL,
    severity         text        NOT NULL CHECK (severity IN ('critical', 'warning')),
    status           text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    level            text        NOT NULL DEFAULT 'county' CHECK (level IN ('county', 'city')),
    dedupe_key       text        NOT NULL,
    count            integer     NOT NULL DEFAULT 1,
    first_seen_at    timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL,
    raised_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    dispatched_at    timestamptz,
    dispatch         jsonb       NOT NULL DEFAULT '[]',
    resolved_at      timestamptz,
    resolved_by      text,
    resolution       text,
    resolution_note  text,
    escalate_at      timestamptz,
    escalated_at     timestamptz,
    silence_id       uuid,
    rule_version     text        NOT NULL,
    incident_id      uuid        NOT NULL,
    details          jsonb       NOT NULL DEFAULT '{}',
    source_event_id  text
);
-- Repeated signals join the open alert: at most one unresolved alert per resident and cause.
CREATE UNIQUE INDEX alerts_open_key ON alerts (dedupe_key) WHERE status <> 'resolved';
CREATE INDEX alerts_escalate_due ON alerts (escalate_at) WHERE escalate_at IS NOT NULL;
CREATE INDEX alerts_county_raised ON alerts (county_code, raised_at DESC, id DESC);
CREATE INDEX alerts_raised ON alerts (raised_at DESC, id DESC);
CREATE INDEX alerts_incident ON alerts (incident_id);

-- The timeline: every step of every alert; its sequence number is the live stream's event id
-- (steps are written under one advisory lock, so numbers commit in order).
CREATE TABLE alert_steps (
    seq         bigserial PRIMARY KEY,
    event_id    text        NOT NULL UNIQUE,
    alert_id    uuid        NOT NULL,
    county_code text        NOT NULL,
    kind        text        NOT NULL,
    at          timestamptz NOT NULL,
    actor       text,
    data        jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_steps_alert ON alert_steps (alert_id, seq);

CREATE TABLE silences (
    id          uuid PRIMARY KEY,
    county_code text        NOT NULL,
    cause       text,
    resident_id text,
    device_id   text,
    owner       text        NOT NULL,
    reason      text        NOT NULL,
    starts_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL CHECK (expires_at > starts_at),
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    revoked_by  text
);
CREATE INDEX silences_active ON silences (county_code, expires_at) WHERE revoked_at IS NULL;

CREATE TABLE subscriptions (
    id          uuid PRIMARY KEY,
    url         text        NOT NULL,
    county_code text,
    severities  text[]      NOT NULL,
    secret      text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    active      boolean     NOT NULL DEFAULT true
);

CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    subscription_id uuid        NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    msg_id          text        NOT NULL,
    payload         bytea       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_status     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (subscription_id, msg_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, id DESC)
"""

DROP = """
DROP TABLE IF EXISTS idempotency_keys; DROP TABLE IF EXISTS deliveries; DROP TABLE IF EXISTS subscriptions; DROP TABLE IF EXISTS silences;
DROP TABLE IF EXISTS alert_steps; DROP TABLE IF EXISTS alerts; DROP TABLE IF EXISTS rules;
DROP TABLE IF EXISTS vital_states; DROP TABLE IF EXISTS signals; DROP TABLE IF EXISTS residents
"""


def upgrade() -> None:
    # Idempotency keys (operators' actions over a flaky network), with the index the pruner walks.
    for statement in statements(DDL) + [IDEMPOTENCY_DDL,
                                        "CREATE INDEX IF NOT EXISTS idempotency_keys_created_at "
                                        "ON idempotency_keys (created_at)"]:
        op.execute(statement)
    # Version 1 of the city's rules: the defaults of this release, written out in full so that an
    # alert's "city:1" keeps meaning the same thresholds after the code's defaults change.
    op.get_bind().execute(
        sa.text("INSERT INTO rules (scope, version, body, created_by, note) "
                "VALUES ('city', 1, CAST(:body AS jsonb), 'migration', 'defaults')"),
        {"body": orjson.dumps(Rules().model_dump(mode="json")).decode()})


def downgrade() -> None:
    for statement in statements(DROP):
        op.execute(statement)
