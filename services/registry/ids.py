"""Resident ids: version-7 UUIDs, so new rows are appended to the indexes ordered by id."""

from __future__ import annotations

import os
import uuid
from time import time_ns

_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}

_last_uuid7_ms = 0


def time_ordered_uuids(n: int) -> list[str]:
    """`n` version-7 UUIDs (RFC 9562) in increasing order: a millisecond timestamp, a 12-bit counter
    (method 1, so ids drawn in the same millisecond still sort), 62 random bits. New residents get
    these: their ids land at the right-hand end of the primary key and of each county's range in the
    search index instead of on random pages, which makes bulk imports cheaper for PostgreSQL."""
    global _last_uuid7_ms
    ids: list[str] = []
    while n > 0:
        take = min(n, 4096)
        ms = max(time_now_ms(), _last_uuid7_ms + 1)
        _last_uuid7_ms = ms
        head = f"{ms:012x}"
        tail = os.urandom(8 * take).hex()
        for i in range(take):
            rand = tail[16 * i:16 * i + 16]
            ids.append(f"{head[:8]}-{head[8:]}-7{i:03x}-{_VARIANT[rand[0]]}{rand[1:4]}-{rand[4:16]}")
        n -= take
    return ids


def time_now_ms() -> int:
    return time_ns() // 1_000_000


def new_resident_id() -> uuid.UUID:
    """One time-ordered id for a resident registered through the API."""
    return uuid.UUID(time_ordered_uuids(1)[0])
