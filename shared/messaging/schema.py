"""The messaging tables every service keeps in its own schema (created by its first migration)."""

from __future__ import annotations

MESSAGING_DDL = """
CREATE TABLE IF NOT EXISTS outbox (
    id            bigserial PRIMARY KEY,
    event_id      text        NOT NULL,
    topic         text        NOT NULL,
    key           text,
    payload       bytea       NOT NULL,
    headers       jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
-- The relay scans only what is unpublished; a partial index keeps that scan small.
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- What the broker acknowledged per partition: the highest offset, and the lowest offset of the
-- latest publish round (a record certainly in the log). An acknowledgement at or below the
-- highest, or an end offset at or below that record, means the broker lost its log (the
-- embedded broker keeps it in memory), and the outbox is replayed.
CREATE TABLE IF NOT EXISTS relay_state (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    high_offset bigint  NOT NULL,
    floor_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- One row per consumed event, written in the transaction of its effect (the idempotency record).
CREATE TABLE IF NOT EXISTS inbox (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
"""

MESSAGING_DROP = "DROP TABLE IF EXISTS inbox; DROP TABLE IF EXISTS relay_state; DROP TABLE IF EXISTS outbox;"


def statements(script: str) -> list[str]:
    """A DDL script as single statements (asyncpg prepares each; several at once are refused).
    Our scripts keep semicolons out of comments and literals."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that wakes a schema's relay."""
    return f"outbox_{schema}"
