"""Tokens against the running services: no start without a secret, audience and lifetime checked."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from shared.auth import issue_token


async def test_a_service_refuses_to_start_without_jwt_secret(settings):
    from services.registry.app import create_app
    from shared.settings import MissingSecret

    app = create_app(settings.model_copy(update={"jwt_secret": ""}))
    with pytest.raises(MissingSecret, match="JWT_SECRET is not set"):
        async with app.router.lifespan_context(app):
            pass


def _signed(settings, **claims) -> dict:
    now = int(time.time())
    body = {"sub": "someone", "role": "city", "iat": now, "exp": now + 600, "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience, "jti": uuid.uuid4().hex, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return {"Authorization": "Bearer " + jwt.encode(body, settings.jwt_secret, algorithm="HS256")}


async def test_a_token_for_one_service_is_refused_by_another(registry, settings):
    from services.reporting.app import create_app

    for_reporting = {"Authorization": "Bearer " + issue_token(settings, "city", audience="reporting")}
    for_registry = {"Authorization": "Bearer " + issue_token(settings, "city", audience="registry")}
    refused = await registry.get("/v1/imports", headers=for_reporting)
    assert refused.status_code == 401 and "another service" in refused.json()["detail"]
    assert (await registry.get("/v1/imports", headers=for_registry)).status_code == 200
    # The platform audience is accepted everywhere.
    assert (await registry.get("/v1/imports", headers=_signed(settings))).status_code == 200
    # No audience at all is refused.
    assert (await registry.get("/v1/imports", headers=_signed(settings, aud=None))).status_code == 401
    app = create_app(settings)
    assert app.state.service == "reporting"


async def test_a_token_living_longer_than_the_maximum_is_refused_even_if_signed(registry, settings):
    now = int(time.time())
    too_long = _signed(settings, iat=now, exp=now + settings.jwt_max_ttl_seconds + 60)
    answer = await registry.get("/v1/imports", headers=too_long)
    assert answer.status_code == 401 and "lifetime" in answer.json()["detail"]
    assert (await registry.get("/v1/imports", headers=_signed(settings, iat=None))).status_code == 401
    with pytest.raises(ValueError, match="JWT_MAX_TTL_SECONDS"):
        issue_token(settings, "city", ttl_seconds=settings.jwt_max_ttl_seconds + 1)
