"""Reporting's callers: `viewer` and up, each with a county scope (services/reporting/domain/scope.py).

A token is read from the Authorization header. Only the live streams also take it from the query
string (`access_token`), because a browser's EventSource and WebSocket cannot send a header;
anywhere else a token in a URL would end up in logs, history and Referer headers for nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.auth import Principal, Role, decode_token
from shared.problems import Forbidden, Unauthorized
from shared.settings import get_settings

_bearer = HTTPBearer(auto_error=False)
AGGREGATE_ROLES = (Role.VIEWER, Role.CITY, Role.COUNTY)


def check_aggregate_reader(request, token: str | None) -> Principal:
    """The caller of an aggregate endpoint (viewer and up)."""
    if not token:
        raise Unauthorized("A bearer token is required (viewer role or above).")
    settings = getattr(request.app.state, "settings", None) or get_settings()
    principal = decode_token(settings, token, "reporting")
    if principal.role not in AGGREGATE_ROLES:
        raise Forbidden(f"The {principal.role.value} role may not read aggregates.")
    return principal


def county_scope(principal: Principal) -> str | None:
    """The one county a reader is limited to, or None for one who sees every county (city, viewer)."""
    return principal.county if principal.role == Role.COUNTY else None


async def aggregate_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return check_aggregate_reader(request, credentials.credentials if credentials else None)


async def stream_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[str | None, Query(description="the token, for EventSource clients (no header)")] = None,
) -> Principal:
    return check_aggregate_reader(request, credentials.credentials if credentials else access_token)


AggregateReader = Annotated[Principal, Depends(aggregate_reader)]
StreamReader = Annotated[Principal, Depends(stream_reader)]
