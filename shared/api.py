"""Small pieces every service's routers use: idempotent writes, JSON responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from fastapi import Request
from fastapi.responses import JSONResponse

from shared.auth import Principal
from shared.idempotency import StoredResponse, claim, remember, request_fingerprint
from shared.service import ServiceRuntime

Write = Callable[[asyncpg.Connection], Awaitable[StoredResponse]]


async def idempotent_write(runtime: ServiceRuntime, principal: Principal, request: Request, body: object,
                           write: Write) -> JSONResponse:
    """Run a write in one transaction; with an Idempotency-Key a repeat gets the first answer again
    (header `Idempotent-Replayed: true`) and has no second effect."""
    key = request.headers.get("Idempotency-Key")
    fingerprint = request_fingerprint(request.method, request.url.path, body)
    async with runtime.db.transaction() as conn:
        stored = await claim(conn, principal.subject, key, fingerprint)
        if stored is not None:
            return JSONResponse(stored.body, status_code=stored.status,
                                headers={**stored.headers, "Idempotent-Replayed": "true"})
        response = await write(conn)
        await remember(conn, principal.subject, key, fingerprint, response)
    return JSONResponse(response.body, status_code=response.status, headers=response.headers)
