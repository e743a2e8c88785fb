"""RFC 9457 problem details. Domain code raises `DomainError`s, plain exceptions with names that
know nothing of HTTP; each service's api package maps them to problem types in one table
(`ProblemMap`), which `install_problem_handlers` answers with. `Problem`s are raised by the web
layer itself (authentication, request parsing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field as dataclass_field
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db import DatabaseUnavailable, is_connection_error

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://eldercare.example/problems/"


class Problem(Exception):
    """An error with an HTTP meaning. Subclasses name what went wrong; `field` names the culprit."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str | None = None, *, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.field = field
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.field:
            body["field"] = self.field
            body.setdefault("errors", [{"field": self.field, "message": self.detail}])
        body.update(self.extra)
        return body


class BadRequest(Problem):
    pass


class Unauthorized(Problem):
    status, title, slug = 401, "Not authenticated", "unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="eldercare"'})
        super().__init__(detail, **kw)


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(Problem):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class PreconditionRequired(Problem):
    status, title, slug = 428, "Precondition required", "precondition-required"


class PayloadTooLarge(Problem):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(Problem):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class Unprocessable(Problem):
    status, title, slug = 422, "Unprocessable content", "validation-error"


class TooManyRequests(Problem):
    status, title, slug = 429, "Too many requests", "too-many-requests"


class ServiceUnavailable(Problem):
    status, title, slug = 503, "Service unavailable", "unavailable"


# Seconds a client is asked to wait while PostgreSQL is away: a restart of the embedded server
# takes about two (docs/benchmarks.md, "PostgreSQL restart").
DATABASE_RETRY_AFTER_S = 3


def database_unavailable(cause: BaseException | None = None) -> ServiceUnavailable:
    """The answer while PostgreSQL is stopped, restarting or not answering: retry shortly."""
    problem = ServiceUnavailable(
        "The database is unreachable (PostgreSQL is stopped, restarting or not answering in time). "
        "Retry after a few seconds; a write retried with the same Idempotency-Key takes effect once. "
        "Operators: see /readyz.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        cause=type(cause).__name__ if cause is not None else "unreachable",
    )
    problem.slug = "database-unavailable"
    return problem


class DomainError(Exception):
    """A rule refused a request. `detail` is the sentence a person reads; `field` names the culprit;
    `extra` members go into the answer as they are (e.g. the county that owns an ID number)."""

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


@dataclass(frozen=True, slots=True)
class ProblemType:
    """How one domain error is answered: the problem it is a kind of (its status, and its title
    unless `title` says otherwise), its own type slug, and any headers the answer carries."""

    kind: type[Problem]
    slug: str
    title: str | None = None
    headers: Mapping[str, str] = dataclass_field(default_factory=dict)

    def problem_of(self, error: DomainError) -> Problem:
        problem = self.kind(error.detail, field=error.field, headers=dict(self.headers), **error.extra)
        problem.slug = self.slug
        if self.title is not None:
            problem.title = self.title
        return problem


ProblemMap = Mapping[type[DomainError], ProblemType]


def problem_for(error: DomainError, problems: ProblemMap) -> Problem | None:
    """The answer to `error` (looked up along its classes, so a subclass may be mapped by its base)."""
    for cls in type(error).__mro__:
        if cls in problems:
            return problems[cls].problem_of(error)  # type: ignore[index]
    return None


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body(str(request.url.path) if request else None),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def _field_of(loc: tuple | list) -> str:
    # FastAPI prefixes the source ("body", "query", "path", "header"); a person wants the field.
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"} and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_errors(errors: list[dict]) -> list[dict[str, Any]]:
    """Pydantic errors as [{field, message, type}] (input values left out: they may be personal)."""
    return [{"field": _field_of(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type")}
            for e in errors]


_unavailable_log = {"last": 0.0, "quiet": 0}


def _warn_unavailable(request: Request, exc: BaseException) -> None:
    """One warning a second while the database is away, with how many 503s it stands for (at
    hundreds of requests a second, one line each would bury everything else in the log)."""
    now = time.monotonic()
    if now - _unavailable_log["last"] < 1.0:
        _unavailable_log["quiet"] += 1
        return
    log.warning("database unavailable on %s %s: %s (%d more 503s since the last warning)",
                request.method, request.url.path, exc, _unavailable_log["quiet"])
    _unavailable_log["last"], _unavailable_log["quiet"] = now, 0


def install_problem_handlers(app: FastAPI, problems: ProblemMap | None = None) -> None:
    """Map every error to a problem-details answer; nothing escapes as an HTML page or a bare 500.
    `problems` is the service's table of domain errors; one missing from it is a bug (logged, 500)."""
    table: ProblemMap = problems or {}

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(DatabaseUnavailable)
    async def _database(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        _warn_unavailable(request, exc)
        return problem_response(database_unavailable(exc.cause), request)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        problem = problem_for(exc, table)
        if problem is None:
            return await _unexpected(request, exc)
        return problem_response(problem, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        if any(e["type"] == "json_invalid" for e in errors):
            problem: Problem = BadRequest("The request body is not valid JSON.", field="body",
                                          errors=errors)
        else:
            first = errors[0] if errors else {"field": "body", "message": "invalid"}
            problem = Unprocessable(f"{first['field']}: {first['message']}", field=first["field"], errors=errors)
        return problem_response(problem, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = Problem(str(exc.detail), headers=dict(exc.headers or {}))
        problem.status = exc.status_code
        problem.title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        problem.slug = f"http-{exc.status_code}"
        return problem_response(problem, request)

    @app.exception_handler(asyncpg.QueryCanceledError)
    async def _too_slow(request: Request, exc: asyncpg.QueryCanceledError) -> JSONResponse:
        # statement_timeout (shared/db.py): the request asked for more work than an API call may do.
        log.warning("statement cancelled on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(ServiceUnavailable(
            "The request took too long and was stopped; narrow it (filters, a smaller page) or retry later.",
            headers={"Retry-After": "5"}), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_connection_error(exc):  # reached the database outside shared.db's wrappers
            _warn_unavailable(request, exc)
            return problem_response(database_unavailable(exc), request)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = Problem("An unexpected error occurred; it has been logged.")
        problem.status, problem.title, problem.slug = 500, "Internal error", "internal"
        return problem_response(problem, request)
