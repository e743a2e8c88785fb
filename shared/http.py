"""ASGI middleware shared by every service: trace context, request metrics, body size limit,
text PostgreSQL cannot store (the NUL character) refused before any handler runs, and the security
headers every response carries."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.observability import HTTP_LATENCY, HTTP_REQUESTS, continue_trace, reset_traceparent, set_traceparent
from shared.problems import PROBLEM_JSON, TYPE_BASE


def _problem_bytes(status: int, title: str, detail: str, slug: str, field: str = "body") -> bytes:
    return orjson.dumps({"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail,
                         "field": field, "errors": [{"field": field, "message": detail}]})


# JSON carries a NUL only as this escape. (Unpaired surrogates, the other text PostgreSQL cannot
# store, are refused by pydantic's JSON parsing already.)
_JSON_NUL = b"\\u0000"


def unstorable(text: str) -> bool:
    """Text PostgreSQL cannot store in a text column: one holding a NUL character."""
    return "\x00" in text


def unstorable_field(value: Any, path: str = "") -> str | None:
    """The first field (dotted path, list items by index) whose text, or key, PostgreSQL cannot store."""
    if isinstance(value, str):
        return (path or "body") if unstorable(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and unstorable(key):
            return name
        found = unstorable_field(item, name)
        if found is not None:
            return found
    return None


def _query_field(query: bytes) -> str | None:
    # Starlette decodes invalid UTF-8 in a query as U+FFFD, so only a NUL can get through.
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, errors="replace"):
        if "\x00" in name:
            return "query"
        if "\x00" in value:
            return name
    return None


# Every response: no MIME sniffing, no Referer (the dashboard's address may carry a token), never
# framed (clickjacking), and not stored by a browser or proxy cache unless a route says otherwise
# (personal data must not sit in caches; only plotly.min.js is cacheable).
_SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                     (b"x-frame-options", b"DENY"))
# A JSON or text answer is never a document: it may load nothing and be framed by no one.
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The dashboard loads exactly its own script, stylesheet and plotly.min.js from /static, and talks to
# its own origin (fetch, EventSource); the favicon is a data: URL. Inline styles stay allowed: plotly
# applies inline styles as it draws (without 'unsafe-inline' Chromium blocks them and the browser
# test fails on the console error); no inline script is allowed, nor eval.
PAGE_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
# FastAPI's Swagger UI (/docs) and ReDoc (/redoc) load their bundles from jsDelivr (ReDoc its fonts
# from Google) and start with an inline script; they show no personal data, and this policy still
# keeps them from being framed, posting forms or talking to any origin but this one.
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CSP = (b"default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
            b"style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            b"font-src https://fonts.gstatic.com; worker-src blob:; "
            b"img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def security_headers(path: str, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers with the platform's security headers added (a route's own Cache-Control
    or Content-Security-Policy is kept)."""
    names = {name.lower() for name, _ in headers}
    out = list(headers) + [h for h in _SECURITY_HEADERS if h[0] not in names]
    if b"cache-control" not in names:
        out.append((b"cache-control", b"no-store"))
    if b"content-security-policy" not in names:
        content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
        html = content_type.lower().startswith(b"text/html")
        out.append((b"content-security-policy",
                    (DOCS_CSP if path.startswith(DOCS_PATHS) else PAGE_CSP) if html else API_CSP))
    return out


class PlatformMiddleware:
    """Enter the caller's trace (W3C traceparent), time the request, refuse oversize bodies (413)."""

    def __init__(self, app: ASGIApp, service: str, max_body_bytes: int,
                 path_limits: dict[str, int] | None = None, own_text_checks: tuple[str, ...] = ()) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        # Paths that judge unstorable text themselves (the ingest gateway: a verdict per event).
        self.own_text_checks = own_text_checks
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
        send = _secured(send, scope.get("path", ""))
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

        path = scope.get("path", "")
        bad = ("path" if unstorable(path) else _query_field(scope.get("query_string", b""))
               or next((name.decode("latin-1") for name, value in scope.get("headers") or []
                        if b"\x00" in value), None))
        if bad is not None:
            await self._unstorable(send, bad)
            reset_traceparent(token)
            return

        received = 0
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        own_check = bool(self.own_text_checks) and path.startswith(self.own_text_checks)
        if (content_type == b"application/json" or content_type.endswith(b"+json")) and not own_check:
            try:
                receive = await self._checked_json(receive, limit)
            except _BodyTooLarge:
                await self._too_large(send, limit)
                reset_traceparent(token)
                return
            except _Unstorable as exc:
                await self._unstorable(send, exc.field)
                reset_traceparent(token)
                return

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
    async def _checked_json(receive: Receive, limit: int) -> Receive:
        """Read a JSON body whole (it is small: the size limit applies), refuse unstorable text in it
        naming the field, and hand the body on unchanged."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                raise _BodyTooLarge()
            if not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if _JSON_NUL in body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None  # the route answers malformed JSON itself
            field = unstorable_field(parsed) if parsed is not None else None
            if field is not None:
                raise _Unstorable(field)
        replay = iter(messages)

        async def replayed() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        return replayed

    @staticmethod
    async def _unstorable(send: Send, field: str) -> None:
        detail = f"{field}: must not contain the NUL character"
        body = _problem_bytes(422, "Unprocessable content", detail, "validation-error", field)
        await send({"type": "http.response.start", "status": 422,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _too_large(send: Send, limit: int) -> None:
        body = _problem_bytes(413, "Payload too large", f"The request body exceeds {limit} bytes.",
                              "payload-too-large")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _secured(send: Send, path: str) -> Send:
    """`send` adding the security headers to the response (the middleware's own 413 and 422 too)."""

    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = security_headers(path, list(message.get("headers") or []))
        await send(message)

    return secured


class _BodyTooLarge(Exception):
    pass


class _Unstorable(Exception):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class FastJSONResponse(JSONResponse):
    """JSON rendered by orjson (datetimes, UUIDs and non-ASCII text handled, several times faster)."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
