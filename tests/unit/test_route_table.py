"""README's route table (Security → Routes and access) names every route each service exposes, with
its roles and county scope: a route added without documenting who may call it fails here, and so
does a row naming a route that no longer exists."""

from __future__ import annotations

import importlib
import re
import secrets
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import WebSocketRoute

from shared.settings import PlatformSettings

SERVICES = ("registry", "orders", "alerts", "reporting")
README = Path(__file__).resolve().parents[2] / "README.md"
SETTINGS = PlatformSettings(_env_file=None, jwt_secret=secrets.token_urlsafe(48))
_ROW = re.compile(r"^\|\s*([^|]+?)\s*\|\s*([A-Z]+)\s*\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*$")


def documented() -> set[tuple[str, str, str]]:
    """(service, method, path) of every row of the table; 'every service' stands for all four."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Routes and access", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    rows: set[tuple[str, str, str]] = set()
    for line in section.splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        services, method, path, roles, scope = match.groups()
        assert roles and scope, f"a row without roles or scope: {line}"
        names = SERVICES if services == "every service" else tuple(s.strip() for s in services.split(","))
        for name in names:
            assert name in SERVICES, f"unknown service {name!r} in: {line}"
            rows.add((name, method, path))
    return rows


def exposed(service: str) -> set[tuple[str, str, str]]:
    """(service, method, path) of every route the service's app answers (HEAD beside GET is implied)."""
    app = importlib.import_module(f"services.{service}.app").create_app(SETTINGS)
    routes: set[tuple[str, str, str]] = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, WebSocketRoute):
            methods = {"WS"}
        else:
            methods = set(route.methods or {"ANY"})
            if "GET" in methods:
                methods.discard("HEAD")
        routes |= {(service, method, route.path) for method in methods}
    return routes


def test_the_table_parses_and_covers_the_operational_routes():
    rows = documented()
    assert ("registry", "POST", "/v1/events") in rows and ("reporting", "WS", "/v1/ws") in rows
    for service in SERVICES:
        assert (service, "GET", "/metrics") in rows


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_a_service_exposes_is_in_the_readme_table(service):
    missing = exposed(service) - documented()
    assert not missing, (f"routes of {service} missing from README's 'Routes and access' table "
                         f"(add a row with their roles and county scope): {sorted(missing)}")


@pytest.mark.parametrize("service", SERVICES)
def test_every_row_of_the_table_is_a_route_the_service_exposes(service):
    stale = {row for row in documented() if row[0] == service} - exposed(service)
    assert not stale, f"README's table names routes {service} does not expose: {sorted(stale)}"
