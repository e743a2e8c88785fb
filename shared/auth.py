"""Bearer tokens (JWT, HS256) carrying a role and a scope, checked by FastAPI dependencies.

Every token names its audience (`aud`: the platform, or one service) and has a bounded lifetime
(`exp - iat` at most JWT_MAX_TTL_SECONDS); both are checked on every decode. There is no built-in
secret: signing and verifying need settings.jwt_secret (settings.require_jwt_secret)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, Request

from shared.problems import Forbidden, Unauthorized
from shared.settings import SERVICES, PlatformSettings, get_settings


class Role(StrEnum):
    CITY = "city"            # everything
    COUNTY = "county"        # one county's residents, events, orders, alerts
    PROVIDER = "provider"    # its own orders and caregivers
    CAREGIVER = "caregiver"  # own assignments
    VIEWER = "viewer"        # aggregates only, never personal data


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the token says."""

    subject: str
    role: Role
    county: str | None = None
    provider_id: str | None = None
    caregiver_id: str | None = None

    def may_see_county(self, county_code: str) -> bool:
        return self.role == Role.CITY or (self.county is not None and self.county == county_code)

    def require_county(self, county_code: str) -> None:
        """403 unless this principal's scope covers the county (city covers all)."""
        if not self.may_see_county(county_code):
            raise Forbidden("This token's scope does not cover that county.", field="county_code")


class TokenLifetimeTooLong(ValueError):
    """A token asked to live longer than JWT_MAX_TTL_SECONDS."""


def audiences(settings: PlatformSettings) -> tuple[str, ...]:
    """What a token may name as its audience: the whole platform, or one service."""
    return (settings.jwt_audience, *SERVICES)


def issue_token(
    settings: PlatformSettings,
    role: Role | str,
    *,
    county: str | None = None,
    subject: str | None = None,
    provider_id: str | None = None,
    caregiver_id: str | None = None,
    ttl_seconds: int | None = None,
    audience: str | None = None,
) -> str:
    """A signed token; a county-scoped role must name its county. `audience`: the platform (default)
    or one service's name, so a token handed to one service is refused by the others."""
    role = Role(role)
    if role == Role.COUNTY and not county:
        raise ValueError("a county token needs a county code")
    ttl = ttl_seconds if ttl_seconds is not None else settings.jwt_ttl_seconds
    if ttl > settings.jwt_max_ttl_seconds:
        raise TokenLifetimeTooLong(
            f"a token may live at most {settings.jwt_max_ttl_seconds} s "
            f"({settings.jwt_max_ttl_seconds / 86400:g} days, JWT_MAX_TTL_SECONDS); {ttl} s asked")
    audience = audience or settings.jwt_audience
    if audience not in audiences(settings):
        raise ValueError(f"unknown audience {audience!r}; choose one of {', '.join(audiences(settings))}")
    now = int(time.time())
    claims = {
        "sub": subject or f"{role.value}:{county or 'all'}",
        "role": role.value,
        "iat": now,
        "exp": now + ttl,
        "iss": settings.jwt_issuer,
        "aud": audience,
        "jti": uuid.uuid4().hex,
    }
    for key, value in (("county", county), ("provider_id", provider_id), ("caregiver_id", caregiver_id)):
        if value:
            claims[key] = value
    return jwt.encode(claims, settings.require_jwt_secret(), algorithm="HS256")


_VERIFIED: dict[tuple[str, str, str | None], tuple[Principal, float]] = {}
_VERIFIED_MAX = 50_000


def decode_token(settings: PlatformSettings, token: str, service: str | None = None) -> Principal:
    """Verify signature, expiry, issuer, audience (the platform, or `service` when given) and
    lifetime; 401 on anything wrong. A token verified before is answered from memory until it
    expires (verifying costs more than the rest of a simple read)."""
    cache_key = (settings.require_jwt_secret(), token, service)
    hit = _VERIFIED.get(cache_key)
    if hit is not None:
        if time.time() < hit[1]:
            return hit[0]
        del _VERIFIED[cache_key]
    principal, expires = _verify(settings, token, service)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[cache_key] = (principal, expires)
    return principal


def _verify(settings: PlatformSettings, token: str, service: str | None) -> tuple[Principal, float]:
    accepted = [settings.jwt_audience] + ([service] if service else [])
    try:
        claims = jwt.decode(
            token, settings.require_jwt_secret(), algorithms=["HS256"], issuer=settings.jwt_issuer,
            audience=accepted, options={"require": ["exp", "iat", "aud", "sub", "role"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired.") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("The token is meant for another service.") from None
    except jwt.PyJWTError:
        raise Unauthorized("The token is not valid.") from None
    # A lifetime beyond the maximum was not issued by this platform's rules (nor is it safe if it
    # leaks): refused even though the signature holds.
    if float(claims["exp"]) - float(claims["iat"]) > settings.jwt_max_ttl_seconds:
        raise Unauthorized("The token's lifetime exceeds the platform's maximum.")
    try:
        role = Role(claims["role"])
    except ValueError:
        raise Unauthorized("The token names an unknown role.") from None
    if role == Role.COUNTY and not claims.get("county"):
        raise Unauthorized("A county token must name its county.")
    return Principal(
        subject=str(claims["sub"]),
        role=role,
        county=claims.get("county"),
        provider_id=claims.get("provider_id"),
        caregiver_id=claims.get("caregiver_id"),
    ), float(claims["exp"])


async def current_principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <jwt>` (401 without a valid token). Read straight from
    the header rather than through FastAPI's HTTPBearer dependency: one dependency level less is a
    tenth of a simple read's CPU; `document_bearer_auth` puts the scheme in the OpenAPI document."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("A bearer token is required.")
    settings = getattr(request.app.state, "settings", None) or get_settings()
    return decode_token(settings, token.strip(), getattr(request.app.state, "service", None))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role):
    """A dependency that lets only the given roles through (403 otherwise)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"The {principal.role.value} role may not do this.")
        return principal

    return check


PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics", "/asyncapi.json")


def document_bearer_auth(app: FastAPI) -> None:
    """Declare the bearer-token scheme in the app's OpenAPI document (every operation but the public
    probes requires it), so /docs offers "Authorize" and clients can generate their auth."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "JWT from `eldercare token`"}
        schema["security"] = [{"bearer": []}]
        for path, operations in schema.get("paths", {}).items():
            if path in PUBLIC_PATHS or path == "/":
                for operation in operations.values():
                    operation["security"] = []
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
