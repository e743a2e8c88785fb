"""Standard Webhooks (standardwebhooks.com): the signed content is "{id}.{timestamp}.{body}",
HMAC-SHA256 with the secret's bytes (the base64 part after "whsec_"), sent as "v1,<base64>"."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
MAX_ATTEMPTS = 8
# Retries after 1 s, 2 s, 4 s … capped at 10 minutes (the spec's schedule is the sender's choice;
# exponential with a cap is what it recommends).
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 600.0


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_bytes(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """What a receiver does: any of the space-separated signatures may match."""
    expected = sign(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in header.split())


def retry_delay(attempts: int) -> float | None:
    """Seconds before the next attempt after `attempts` failures; None: dead-lettered."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (attempts - 1))
