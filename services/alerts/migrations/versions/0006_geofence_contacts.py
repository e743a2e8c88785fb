"""Geofences and emergency contacts: the residents' home location, safe zones set per resident
(optionally per device) and each resident's zone state; emergency contacts (phone numbers held
here, shown in clear only with a reason, audited in an append-only audit log) and the notification
attempts of each alert; the indexes the history pruner walks.

The city's rules get a new version carrying the geofence and contact defaults if the latest one
predates them, so an alert's rule version keeps naming the thresholds that raised it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import orjson
import sqlalchemy as sa
from alembic import op

from services.alerts.domain.rules import ContactRule, GeofenceRule
from shared.messaging.schema import statements

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DDL = """
ALTER TABLE residents ADD COLUMN home_lat double precision, ADD COLUMN home_lon double precision;
CREATE TABLE geofences (
    resident_id uuid PRIMARY KEY,
    county_code text             NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    radius_m    double precision NOT NULL,
    device_id   text,
    note        text,
    set_by      text             NOT NULL,
    set_at      timestamptz      NOT NULL DEFAULT now()
);
CREATE TABLE geofence_states (
    resident_id uuid PRIMARY KEY,
    state       text        NOT NULL,
    streak      integer     NOT NULL DEFAULT 0,
    distance_m  double precision,
    last_fix_at timestamptz,
    zone_source text
);
CREATE TABLE contacts (
    resident_id uuid        NOT NULL,
    position    smallint    NOT NULL,
    county_code text        NOT NULL,
    name        text        NOT NULL,
    relation    text,
    phone       text        NOT NULL,
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resident_id, position)
);
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    alert_id        uuid        NOT NULL,
    county_code     text        NOT NULL,
    resident_id     uuid        NOT NULL,
    position        smallint    NOT NULL,
    name            text        NOT NULL,
    phone           text        NOT NULL,
    trigger         text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_alert ON notifications (alert_id, id);
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
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
CREATE INDEX alerts_resolved_at ON alerts (resolved_at) WHERE status = 'resolved';
CREATE INDEX deliveries_done ON deliveries (created_at) WHERE status <> 'pending';
CREATE INDEX orders_scheduled_start ON orders (scheduled_start)
"""

# The audit log is append-only, as the registry's is (its migration 0005): a trigger refuses UPDATE,
# DELETE and TRUNCATE for every role, this service's own included. Kept apart from DDL: the
# function body holds semicolons.
APPEND_ONLY = [
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'audit_log is append-only, ' || TG_OP || ' refused';
END
$$""",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]

DROP = """
DROP INDEX IF EXISTS orders_scheduled_start; DROP INDEX IF EXISTS deliveries_done; DROP INDEX IF EXISTS alerts_resolved_at;
DROP TABLE IF EXISTS audit_log; DROP FUNCTION IF EXISTS audit_log_append_only();
DROP TABLE IF EXISTS notifications; DROP TABLE IF EXISTS contacts; DROP TABLE IF EXISTS geofence_states;
DROP TABLE IF EXISTS geofences; ALTER TABLE residents DROP COLUMN IF EXISTS home_lat, DROP COLUMN IF EXISTS home_lon
"""


def upgrade() -> None:
    for statement in statements(DDL) + APPEND_ONLY:
        op.execute(statement)
    bind = op.get_bind()
    latest = bind.execute(sa.text("SELECT version, body FROM rules WHERE scope = 'city' "
                                  "ORDER BY version DESC LIMIT 1")).first()
    if latest is not None and ("geofence" not in latest.body or "contacts" not in latest.body):
        body = {"geofence": GeofenceRule().model_dump(mode="json"),
                "contacts": ContactRule().model_dump(mode="json"), **latest.body}
        bind.execute(sa.text("INSERT INTO rules (scope, version, body, created_by, note) "
                             "VALUES ('city', :version, CAST(:body AS jsonb), 'migration', :note)"),
                     {"version": latest.version + 1, "body": orjson.dumps(body).decode(),
                      "note": "geofence and emergency-contact defaults"})


def downgrade() -> None:
    for statement in statements(DROP):
        op.execute(statement)
