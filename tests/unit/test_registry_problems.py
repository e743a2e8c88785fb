"""The registry's domain errors are plain exceptions; services/registry/api/problems.py answers each
with the status, type, title and headers clients have always been given."""

from __future__ import annotations

import inspect

import httpx
import pytest
from fastapi import FastAPI

from services.registry.api.problems import PROBLEMS
from services.registry.domain import errors, imports
from shared.problems import TYPE_BASE, DomainError, Problem, install_problem_handlers

# (error, status, type slug, title, extra headers) as the API answered before the table existed.
ANSWERS = [
    (errors.ResidentNotFound, 404, "resident-not-found", "Not found", {}),
    (errors.ResidentAlreadyRegistered, 409, "resident-already-registered", "Conflict", {}),
    (errors.ResidentNotActive, 409, "resident-not-active", "Conflict", {}),
    (errors.StaleVersion, 412, "stale-version", "Precondition failed", {}),
    (errors.VersionRequired, 428, "if-match-required", "Precondition required", {}),
    (errors.OutsideScope, 403, "outside-scope", "Forbidden", {}),
    (errors.InvalidRecord, 422, "invalid-record", "Unprocessable content", {}),
    (imports.ImportJobNotFound, 404, "import-not-found", "Not found", {}),
    (imports.UnsupportedImportFile, 415, "unsupported-import-file", "Unsupported file", {}),
    (imports.ImportsBusy, 503, "imports-busy", "Service unavailable", {"retry-after": "60"}),
]


def _domain_errors() -> set[type]:
    return {cls for module in (errors, imports) for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, DomainError) and cls is not DomainError}


def test_domain_errors_know_nothing_of_http():
    assert _domain_errors()
    for cls in _domain_errors():
        assert not issubclass(cls, Problem), cls


def test_every_domain_error_has_an_answer():
    assert _domain_errors() == set(PROBLEMS) == {a[0] for a in ANSWERS}


@pytest.fixture
async def client():
    app = FastAPI()
    install_problem_handlers(app, PROBLEMS)

    @app.get("/raise/{index}")
    async def raise_error(index: int) -> None:
        raise ANSWERS[index][0]("What went wrong.", field="id_number", owner_county="410902")

    @app.get("/unmapped")
    async def unmapped() -> None:
        raise DomainError("Nobody mapped this.")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://t") as c:
        yield c


@pytest.mark.parametrize("index", range(len(ANSWERS)), ids=[a[0].__name__ for a in ANSWERS])
async def test_each_domain_error_is_answered_as_before(client, index):
    _, status, slug, title, headers = ANSWERS[index]
    response = await client.get(f"/raise/{index}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": TYPE_BASE + slug, "title": title, "status": status, "detail": "What went wrong.",
        "instance": f"/raise/{index}", "field": "id_number",
        "errors": [{"field": "id_number", "message": "What went wrong."}], "owner_county": "410902"}
    for name, value in headers.items():
        assert response.headers[name] == value


async def test_a_domain_error_missing_from_the_table_is_an_internal_error_not_a_guess(client):
    response = await client.get("/unmapped")
    assert response.status_code == 500 and response.json()["type"] == TYPE_BASE + "internal"
