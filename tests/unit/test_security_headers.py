"""Every service's answers carry the security headers a careful production service sets: no MIME
sniffing, no Referer, never framed, not cached, and a Content-Security-Policy (strict for the
dashboard, nothing at all for JSON)."""

from __future__ import annotations

import secrets

import httpx
import pytest

from services.registry.app import create_app as registry_app
from services.reporting.app import create_app as reporting_app
from shared.settings import PlatformSettings

SETTINGS = PlatformSettings(_env_file=None, jwt_secret=secrets.token_urlsafe(48))


def client(app) -> httpx.AsyncClient:
    # No lifespan: the routes asked here need no database (or answer 401/503 before they would).
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def assert_common(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/healthz", "/asyncapi.json", "/v1/residents/00000000-0000-0000-0000-000000000000"])
async def test_api_answers_are_never_cached_sniffed_framed_or_documents(path):
    async with client(registry_app(SETTINGS)) as http:
        response = await http.get(path)
    assert_common(response)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"].startswith("default-src 'none';")


async def test_the_middlewares_own_refusals_carry_them_too():
    async with client(registry_app(SETTINGS)) as http:
        nul = await http.get("/healthz", params={"q": "a\x00b"})
        big = await http.post("/v1/residents", content=b"x" * 64, headers={"content-length": str(10**9)})
    assert (nul.status_code, big.status_code) == (422, 413)
    for response in (nul, big):
        assert_common(response)
        assert response.headers["cache-control"] == "no-store"


async def test_the_dashboard_page_may_load_only_its_own_scripts_and_styles():
    async with client(reporting_app(SETTINGS)) as http:
        page = await http.get("/")
        plotly = await http.get("/static/plotly.min.js")
        docs = await http.get("/docs")
        redoc = await http.get("/redoc")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_common(page)
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'" and policy["base-uri"] == "'none'"
    assert "unsafe-eval" not in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    # The chart library is the one thing a browser may keep (a route's own Cache-Control wins).
    assert plotly.headers["cache-control"] == "public, max-age=86400"
    assert_common(plotly)
    # Swagger UI and ReDoc come from jsDelivr: their pages get a policy of their own, still never framed.
    for page in (docs, redoc):
        assert "https://cdn.jsdelivr.net" in page.headers["content-security-policy"]
        assert_common(page)
