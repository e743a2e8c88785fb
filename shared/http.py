"""ASGI middleware shared by every service: trace context, request metrics, body size limit."""

from __future__ import annotations

import time

import orjson
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.observability import HTTP_LATENCY, HTTP_REQUESTS, continue_trace, reset_traceparent, set_traceparent
from shared.problems import PROBLEM_JSON, TYPE_BASE


def _problem_bytes(status: int, title: str, detail: str, slug: str) -> bytes:
    return orjson.dumps({"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail,
                         "field": "body", "errors": [{"field": "body", "message": detail}]})


class PlatformMiddleware:
    """Enter the caller's trace (W3C traceparent), time the request, refuse oversize bodies (413)."""

    def __init__(self, app: ASGIApp, service: str, max_body_bytes: int,
                 path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        # Longest prefix first, e.g. a spreadsheet upload path allows more than the default.
        self.path_limits = sorted((path_limits or {}).items(), key=lambda kv: -len(kv[0]))

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.path_limits:
            if path.startswith(prefix):
                return limit
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"traceparent", b"").decode("latin-1") or None
        token = set_traceparent(None)
        traceparent = continue_trace(incoming)
        started = time.perf_counter()
        status_holder = {"status": 500}
        limit = self._limit_for(scope.get("path", ""))

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(send, limit)
            reset_traceparent(token)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"traceparent", traceparent.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_trace)
        except _BodyTooLarge:
            await self._too_large(send, limit)
            status_holder["status"] = 413
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(self.service, method, path, str(status_holder["status"])).inc()
            HTTP_LATENCY.labels(self.service, method, path).observe(time.perf_counter() - started)
            reset_traceparent(token)

    @staticmethod
    async def _too_large(send: Send, limit: int) -> None:
        body = _problem_bytes(413, "Payload too large", f"The request body exceeds {limit} bytes.",
                              "payload-too-large")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson (datetimes, UUIDs and non-ASCII text handled, several times faster)."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
