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

# Added by each service's `relay_progress` migration (after the tables above).
RELAY_PROGRESS_DDL = """
-- A replay after a broker loss, persisted so that a new leader or a restarted relay carries on where
-- it stopped: the outbox ids in (replay_position, replay_end] still go again, in id order, before any
-- newer row. One row per schema; losses counts the losses noticed.
CREATE TABLE IF NOT EXISTS relay_progress (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    replay_start      bigint,
    replay_position   bigint,
    replay_end        bigint,
    replay_started_at timestamptz,
    losses            bigint NOT NULL DEFAULT 0
);
INSERT INTO relay_progress (losses) VALUES (0) ON CONFLICT DO NOTHING;
-- Retention is per topic (device telemetry hours, resident state days): one index serves both the
-- per-topic prune and, by skip scan, the prune of every topic at the longest retention.
CREATE INDEX IF NOT EXISTS outbox_topic_published_at ON outbox (topic, published_at) WHERE published_at IS NOT NULL;
DROP INDEX IF EXISTS outbox_published_at;
"""

RELAY_PROGRESS_DROP = """
CREATE INDEX IF NOT EXISTS outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
DROP INDEX IF EXISTS outbox_topic_published_at;
DROP TABLE IF EXISTS relay_progress;
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
