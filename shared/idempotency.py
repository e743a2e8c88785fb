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
    check_key(key)
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


# ---------------------------------------------------------------- claiming in the write's own statements
# For a hot path that cannot spend two round trips on the claim (advisory lock, then read) and a
# third on remembering: the claim is an upsert, a CTE of the statement that reads what the write
# needs, and the answer goes into the statement that writes. A concurrent repeat waits on the
# claimed row exactly as it waits on the advisory lock above.

def claim_cte(actor: str, key: str, fingerprint: str) -> str:
    """A CTE named `claim`, one row, for a statement whose placeholders `actor`, `key` and
    `fingerprint` (e.g. "$4") carry the request's: `idem_claimed` is true when this transaction
    claimed the key (a placeholder row, filled by `remember_sql` before it commits); otherwise the
    row is the stored answer, locked, of an earlier request (its transaction ended first)."""
    return f"""claim AS (
        INSERT INTO idempotency_keys AS k (actor, key, request_hash, status, body)
        VALUES ({actor}, {key}, {fingerprint}, 0, 'null'::jsonb)
        ON CONFLICT (actor, key) DO UPDATE SET actor = k.actor
        RETURNING (k.xmax = 0) AS idem_claimed, k.request_hash AS idem_hash, k.status AS idem_status,
                  k.body AS idem_body, k.headers AS idem_headers)"""


def remember_sql(actor: str, key: str, status: str, body: str, headers: str) -> str:
    """An UPDATE (for a CTE of the write's statement) storing the answer of a key `claim_cte` claimed."""
    return (f"UPDATE idempotency_keys SET status = {status}, body = {body}, headers = {headers} "
            f"WHERE actor = {actor} AND key = {key}")


def check_key(key: str) -> None:
    if len(key) > 200:
        raise Unprocessable("Idempotency-Key is longer than 200 characters.", field="Idempotency-Key")


def stored_answer(row, fingerprint: str) -> StoredResponse | None:
    """From a row with `claim_cte`'s columns: None when this request claimed the key, else the
    stored answer to replay (422 when the key was used for another request)."""
    if row["idem_claimed"]:
        return None
    if row["idem_hash"] != fingerprint:
        raise Unprocessable("This Idempotency-Key was used for a different request.", field="Idempotency-Key")
    return StoredResponse(row["idem_status"], row["idem_body"], dict(row["idem_headers"] or {}))
