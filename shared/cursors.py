"""Pagination cursors: opaque to clients, tamper-evident, parsed without reaching the database.

A cursor is base64url(JSON values) + "." + base64url(HMAC-SHA256 over the route's name and the
values, first 16 bytes). The key is derived from the platform's JWT secret (domain-separated, so
neither can stand in for the other). A cursor a client made up, edited, or took from another route
fails the MAC and is a 422 naming `cursor`; one that passes carries exactly the values this service
wrote, so the route only checks their types. Every paginated route of every service uses this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from shared.problems import Unprocessable

MAX_CURSOR_LENGTH = 512
_MAC_BYTES = 16


class InvalidCursor(Unprocessable):
    slug = "invalid-cursor"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"eldercare/cursor/v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, route: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret), route.encode() + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(secret: str, route: str, values: list[Any]) -> str:
    """A cursor for `route` carrying JSON-serialisable `values` (ints, strings, ISO timestamps)."""
    payload = orjson.dumps(values)
    return f"{_b64(payload)}.{_b64(_mac(secret, route, payload))}"


def decode_cursor(secret: str, route: str, cursor: str, types: tuple[type, ...]) -> list[Any]:
    """The values `encode_cursor` put in, checked against `types`; InvalidCursor (422) otherwise."""
    bad = InvalidCursor("The cursor is not one this service gave out for this list; start again without it.",
                        field="cursor")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1:
        raise bad
    body, _, tag = cursor.partition(".")
    try:
        payload, mac = _unb64(body), _unb64(tag)
    except (ValueError, TypeError):
        raise bad from None
    if not hmac.compare_digest(mac, _mac(secret, route, payload)):
        raise bad
    try:
        values = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise bad from None
    if not isinstance(values, list) or len(values) != len(types) or not all(
            isinstance(v, t) and not (t is int and isinstance(v, bool)) for v, t in zip(values, types)):
        raise bad
    return values


def cursor_secret(request) -> str:
    """The key material of the app serving `request` (its settings' JWT secret)."""
    from shared.settings import get_settings

    settings = getattr(request.app.state, "settings", None) or get_settings()
    return settings.jwt_secret
