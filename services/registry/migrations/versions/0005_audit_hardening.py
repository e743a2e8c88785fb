"""The audit log is append-only, enforced in the database; ID-number lookups record the number's hash.

A trigger refuses UPDATE, DELETE and TRUNCATE on audit_log for every role, the table owner and the
role the services connect as included (today one role migrates and serves, so a REVOKE alone would
not bind it); PUBLIC's privileges are revoked as well, for deployments that serve as another role.
Only a superuser who drops the trigger can change history (and that DDL is itself visible).
`id_number_hash` holds the keyed hash of a looked-up ID number (never the number); the index on
(actor, action, at) answers the per-caller lookup rate.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = [
    "ALTER TABLE audit_log ADD COLUMN id_number_hash text",
    "CREATE INDEX audit_log_actor_action_at ON audit_log (actor, action, at)",
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
    "REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC",
]

DOWNGRADE = [
    "DROP TRIGGER audit_log_no_truncate ON audit_log",
    "DROP TRIGGER audit_log_no_change ON audit_log",
    "DROP FUNCTION audit_log_append_only()",
    "DROP INDEX audit_log_actor_action_at",
    "ALTER TABLE audit_log DROP COLUMN id_number_hash",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
