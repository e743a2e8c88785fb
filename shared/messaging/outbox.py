"""Writing events to the outbox, in the caller's transaction (so a rollback drops them).

The one writer API: `add_events` for envelopes built with `make_event`; `add_rows` for prepared rows,
one to millions (COPY from `_COPY_THRESHOLD` rows); `add_new_rows` for rows written only if their key
was never claimed before (the ingest gateway). Hot paths that cannot afford a pydantic model per
event encode with `fast_event_json` and `fields_of(Model)`, generated from the models, so their bytes
are `CloudEvent.to_json()`'s (tests/unit/test_fast_encoding.py checks every example).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence

import asyncpg
import orjson
from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_json

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


async def add_new_rows(conn: asyncpg.Connection, rows: Sequence[tuple], claims: Sequence[tuple[str, str, str]],
                       claim_table: str, claim_columns: tuple[str, str, str], schema: str | None = None) -> set[int]:
    """Claim each row's key (three text columns of `claim_table`) and write the rows whose key was new,
    in their order, in one round trip. Returns the positions (1-based) of the rows claimed before;
    the caller drops repeats within `rows` first, so each claim matches one row. Claims are taken in
    key order, so two writers sharing keys wait for one another instead of deadlocking."""
    if not rows:
        return set()
    a, b, c = claim_columns
    ids, topics, keys, payloads, headers = zip(*rows)
    ca, cb, cc = zip(*claims)
    repeated = await conn.fetch(f"""
        WITH posted AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $7::bytea[], $8::jsonb[])
                WITH ORDINALITY AS p(k1, k2, k3, event_id, topic, key, payload, headers, ord)
        ), claimed AS (
            INSERT INTO {claim_table} ({a}, {b}, {c})
            SELECT k1, k2, k3 FROM posted ORDER BY k1, k2, k3
            ON CONFLICT DO NOTHING
            RETURNING {a} AS k1, {b} AS k2, {c} AS k3
        ), written AS (
            INSERT INTO outbox (event_id, topic, key, payload, headers)
            SELECT p.event_id, p.topic, p.key, p.payload, p.headers
            FROM posted p JOIN claimed USING (k1, k2, k3) ORDER BY p.ord
        )
        SELECT p.ord FROM posted p
        WHERE NOT EXISTS (SELECT 1 FROM claimed k WHERE k.k1 = p.k1 AND k.k2 = p.k2 AND k.k3 = p.k3)""",
        list(ca), list(cb), list(cc), list(ids), list(topics), list(keys), list(payloads), list(headers))
    if len(repeated) < len(rows):
        await notify_relay(conn, schema or await conn.fetchval("SELECT current_schema()"))
    return {r[0] for r in repeated}


def fields_of(model: type[BaseModel]) -> Callable[..., dict]:
    """A function taking `model`'s fields as keywords and returning what `model_dump(exclude_none=True)`
    gives for them (field order, defaults filled in, None and a field's `exclude_if` values left out)
    without building or validating the model: for callers whose values are checked already. Nested
    models are passed as such dicts.
    Generated from `model.model_fields`, so a field added to the model is a field here."""
    params, body, env = [], ["d = {}"], {}
    for i, (name, field) in enumerate(model.model_fields.items()):
        if field.default_factory is not None:
            env[f"_f{i}"] = field.default_factory
            params.append(f"{name}=_UNSET")
            body.append(f"if {name} is _UNSET: {name} = _f{i}()")
        elif field.default is not PydanticUndefined:
            env[f"_d{i}"] = field.default
            params.append(f"{name}=_d{i}")
        else:
            params.append(name)
        may_be_none = field.default is None or _admits_none(field.annotation)
        conditions = [f"{name} is not None"] if may_be_none else []
        if getattr(field, "exclude_if", None) is not None:
            # A field the model leaves out of its dump at some value (e.g. at its default).
            env[f"_x{i}"] = field.exclude_if
            conditions.append(f"not _x{i}({name})")
        body.append(f"if {' and '.join(conditions)}: d[{name!r}] = {name}" if conditions else f"d[{name!r}] = {name}")
    source = f"def build(*, {', '.join(params)}):\n    " + "\n    ".join([*body, "return d"])
    env["_UNSET"] = _UNSET
    exec(compile(source, f"<fields_of {model.__name__}>", "exec"), env)  # noqa: S102 - source built from field names
    return env["build"]


def _admits_none(annotation) -> bool:
    if annotation is None or annotation is type(None) or annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_admits_none(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _admits_none(typing.get_args(annotation)[0])
    return False


_UNSET = object()
_ENVELOPE = fields_of(CloudEvent)


def fast_event_json(**envelope) -> bytes:
    """`CloudEvent(**envelope).to_json()` without the model: `data` is a dict from `fields_of(Model)`."""
    # pydantic-core's writer: dates and times as pydantic writes them, and (unlike orjson.dumps) no
    # slowdown when a caller keeps a hundred thousand results alive, as an import chunk does.
    return to_json(_ENVELOPE(**envelope))


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
