"""Roles and scopes on bearer tokens; RFC 9457 answers naming the field; body size limits."""

from __future__ import annotations

import secrets
import time

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from shared.auth import CurrentPrincipal, Role, issue_token, require_roles
from shared.http import PlatformMiddleware
from shared.problems import Conflict, install_problem_handlers
from shared.settings import PlatformSettings

SETTINGS = PlatformSettings(_env_file=None, jwt_secret=secrets.token_urlsafe(48))


class Thing(BaseModel):
    name: str = Field(min_length=1)
    beds: int = Field(ge=0)


def build_app() -> FastAPI:
    app = FastAPI()
    app.state.settings = SETTINGS
    install_problem_handlers(app)
    app.add_middleware(PlatformMiddleware, service="test", max_body_bytes=1000)

    @app.get("/v1/counties/{county_code}/things")
    async def list_things(county_code: str, principal: CurrentPrincipal) -> dict:
        principal.require_county(county_code)
        return {"county": county_code}

    @app.post("/v1/things", dependencies=[Depends(require_roles(Role.CITY, Role.COUNTY))])
    async def create(thing: Thing) -> dict:
        if thing.name == "taken":
            raise Conflict("That name is registered by county 410902.", field="name", owner_county="410902")
        return thing.model_dump()

    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_county_token_gets_403_on_another_countys_resource(client):
    token = issue_token(SETTINGS, Role.COUNTY, county="410928")
    assert (await client.get("/v1/counties/410928/things", headers=bearer(token))).status_code == 200
    denied = await client.get("/v1/counties/410902/things", headers=bearer(token))
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["field"] == "county_code"


async def test_city_token_sees_every_county(client):
    token = issue_token(SETTINGS, Role.CITY)
    assert (await client.get("/v1/counties/410902/things", headers=bearer(token))).status_code == 200


async def test_missing_token_gets_401_with_challenge(client):
    response = await client.get("/v1/counties/410928/things")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_expired_token_gets_401(client):
    token = issue_token(SETTINGS, Role.CITY, ttl_seconds=-10)
    response = await client.get("/v1/counties/410928/things", headers=bearer(token))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_tampered_token_gets_401(client):
    token = issue_token(SETTINGS, Role.COUNTY, county="410928")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["county"] = "410902"
    forged = jwt.encode(claims, "another-secret-of-sufficient-length-000", algorithm="HS256")
    header, payload, signature = token.split(".")
    swapped = ".".join([header, forged.split(".")[1], signature])
    for bad in (forged, swapped, token[:-3] + "abc", "not-a-jwt"):
        assert (await client.get("/v1/counties/410902/things", headers=bearer(bad))).status_code == 401


async def test_token_signed_with_none_algorithm_is_refused(client):
    claims = {"sub": "x", "role": "city", "exp": int(time.time()) + 60, "iss": "eldercare"}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert (await client.get("/v1/counties/410902/things", headers=bearer(unsigned))).status_code == 401


async def test_viewer_may_not_write(client):
    token = issue_token(SETTINGS, Role.VIEWER)
    assert (await client.post("/v1/things", json={"name": "a", "beds": 1}, headers=bearer(token))).status_code == 403


async def test_wrong_type_gets_422_naming_the_field(client):
    token = issue_token(SETTINGS, Role.CITY)
    response = await client.post("/v1/things", json={"name": "a", "beds": "many"}, headers=bearer(token))
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "beds"
    assert body["errors"][0]["field"] == "beds"
    assert body["type"].endswith("validation-error")


async def test_malformed_json_gets_400(client):
    token = issue_token(SETTINGS, Role.CITY)
    response = await client.post("/v1/things", content=b'{"name": ', headers={
        **bearer(token), "content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["title"] == "Bad request"


async def test_oversize_body_gets_413(client):
    token = issue_token(SETTINGS, Role.CITY)
    response = await client.post("/v1/things", json={"name": "x" * 2000, "beds": 1}, headers=bearer(token))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_domain_conflict_is_a_problem_with_extra_members(client):
    token = issue_token(SETTINGS, Role.CITY)
    response = await client.post("/v1/things", json={"name": "taken", "beds": 1}, headers=bearer(token))
    assert response.status_code == 409
    assert response.json()["owner_county"] == "410902"


async def test_unknown_route_is_a_problem_not_html(client):
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_settings_without_a_secret_sign_and_verify_nothing():
    from shared.settings import MissingSecret

    bare = PlatformSettings(_env_file=None, eldercare_env="production", jwt_secret="")
    with pytest.raises(MissingSecret, match="JWT_SECRET"):
        bare.require_jwt_secret()
    with pytest.raises(MissingSecret):
        issue_token(bare, Role.CITY)


async def test_a_basic_scheme_or_empty_bearer_gets_401(client):
    for header in ("Basic dXNlcjpwYXNz", "Bearer ", "Bearer"):
        answer = await client.get("/v1/counties/410928/things", headers={"Authorization": header})
        assert answer.status_code == 401, header


def test_openapi_documents_the_bearer_scheme_and_leaves_probes_public():
    from shared.auth import document_bearer_auth

    app = build_app()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {}

    document_bearer_auth(app)
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "JWT from `eldercare token`"}
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in schema["paths"]["/v1/things"]["post"]
