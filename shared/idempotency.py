"""Idempotency-Key for writes a flaky mobile network may repeat: the first answer is stored in the
same transaction as the write and replayed for a repeat; the same key with another body is refused."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg
import orjson

from shared.problems import Unprocessable

IDEMPOTENCY_DDL = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    actor        text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status       integer     NOT NULL,
    body         jsonb       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key)
)
"""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: object
    headers: dict[str, str]


def request_fingerprint(method: str, path: str, body: object) -> str:
    return hashlib.sha256(orjson.dumps([method, path, body], option=orjson.OPT_SORT_KEYS)).hexdigest()


async def claim(conn: asyncpg.Connection, actor: str, key: str | None, fingerprint: str) -> StoredResponse | None:
    """Inside the write's transaction: the stored answer of an earlier identical request, or None
    (and the key is locked until this transaction ends, so a concurrent repeat waits)."""
    if not key:
        return None
    if len(key) > 200:
        raise Unprocessable("Idempotency-Key is longer than 200 characters.", field="Idempotency-Key")
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"idem:{actor}:{key}")
    row = await conn.fetchrow(
        "SELECT request_hash, status, body, headers FROM idempotency_keys WHERE actor = $1 AND key = $2", actor, key
    )
    if row is None:
        return None
    if row["request_hash"] != fingerprint:
        raise Unprocessable("This Idempotency-Key was used for a different request.", field="Idempotency-Key")
    return StoredResponse(row["status"], row["body"], dict(row["headers"] or {}))


async def remember(conn: asyncpg.Connection, actor: str, key: str | None, fingerprint: str,
                   response: StoredResponse) -> None:
    if not key:
        return
    await conn.execute(
        "INSERT INTO idempotency_keys (actor, key, request_hash, status, body, headers) VALUES ($1,$2,$3,$4,$5,$6)",
        actor, key, fingerprint, response.status, response.body, response.headers,
    )
