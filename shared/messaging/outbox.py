"""Writing events to the outbox, in the caller's transaction (so a rollback drops them)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from shared.events.envelope import CloudEvent
from shared.messaging.schema import notify_channel
from shared.messaging.topics import topic_for_event_type

CONTENT_TYPE = "application/cloudevents+json"
# Above this many rows COPY beats one INSERT … unnest round trip.
_COPY_THRESHOLD = 2000


def outbox_row(event: CloudEvent, topic: str | None = None, headers: dict | None = None) -> tuple:
    """(event_id, topic, key, payload, headers) for one event; the key is its subject (SPEC §3)."""
    return (
        event.id,
        topic or topic_for_event_type(event.type).name,
        event.subject,
        event.to_json(),
        headers,
    )


async def add_rows(conn: asyncpg.Connection, rows: Sequence[tuple], schema: str | None = None) -> None:
    """Insert prepared outbox rows and wake the relay (the NOTIFY fires only if the transaction commits)."""
    if not rows:
        return
    if len(rows) >= _COPY_THRESHOLD:
        await conn.copy_records_to_table(
            "outbox",
            records=rows,
            columns=("event_id", "topic", "key", "payload", "headers"),
            schema_name=schema,
        )
    else:
        ids, topics, keys, payloads, headers = zip(*rows)
        await conn.execute(
            "INSERT INTO outbox (event_id, topic, key, payload, headers) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[])",
            list(ids), list(topics), list(keys), list(payloads), list(headers),
        )
    channel_schema = schema or await conn.fetchval("SELECT current_schema()")
    await conn.execute("SELECT pg_notify($1, '')", notify_channel(channel_schema))


async def add_events(conn: asyncpg.Connection, events: Sequence[CloudEvent], schema: str | None = None) -> None:
    """Record events for publication in the caller's transaction."""
    await add_rows(conn, [outbox_row(e) for e in events], schema)


def dead_letter_row(
    raw: bytes | None, source_topic: str, partition: int, offset: int, key: bytes | None,
    consumer: str, reason: str, event_id: str | None = None,
) -> tuple:
    """An outbox row that carries an unusable record to its topic's dead-letter topic."""
    headers = {
        "dlq-reason": reason[:2000],
        "dlq-consumer": consumer,
        "dlq-source-topic": source_topic,
        "dlq-source-partition": str(partition),
        "dlq-source-offset": str(offset),
    }
    return (
        event_id or f"dlq:{consumer}:{source_topic}:{partition}:{offset}",
        source_topic + ".dlq",
        key.decode("utf-8", "replace") if key else None,
        raw or b"",
        headers,
    )


def encode_headers(headers: dict | None) -> list[tuple[str, bytes]]:
    """Kafka record headers from the outbox's jsonb headers."""
    base = [("content-type", CONTENT_TYPE.encode())]
    if headers:
        base.extend((k, str(v).encode()) for k, v in headers.items())
    return base


def dumps(value: object) -> bytes:
    return orjson.dumps(value)


async def notify_relay(conn: asyncpg.Connection, schema: str) -> None:
    """Wake the schema's relay once the transaction commits, for a caller that wrote its outbox rows
    in its own statement (the NOTIFY is dropped on rollback, like the rows)."""
    await conn.execute("SELECT pg_notify($1, '')", notify_channel(schema))
