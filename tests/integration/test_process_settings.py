"""Process-wide interpreter settings (shared/process.py) belong to the process entrypoints: a service
started inside another process (a test, an embedding application) leaves that interpreter alone."""

from __future__ import annotations

import gc
import importlib
import sys

import pytest

from eldercare.synthetic import CSV_HEADERS, write_csv
from services.registry.importer import create_job, run_import
from shared.db import connect
from tests.conftest import fresh_id_number


@pytest.fixture
def interpreter_changes(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("gc.freeze"))
    monkeypatch.setattr(gc, "set_threshold", lambda *a: calls.append(("gc.set_threshold", a)))
    monkeypatch.setattr(sys, "setswitchinterval", lambda s: calls.append(("sys.setswitchinterval", s)))
    return calls


@pytest.mark.parametrize("service", ["registry", "reporting"])
async def test_starting_a_service_in_process_changes_no_interpreter_setting(service, settings, interpreter_changes):
    # Workers built but not started: a second consumer in the session's groups would only rebalance them.
    quiet = settings.model_copy(update={"run_workers_in_api": False})
    app = importlib.import_module(f"services.{service}.app").create_app(quiet)
    async with app.router.lifespan_context(app):
        assert app.state.runtime.consumers or service == "registry"
    assert interpreter_changes == []


async def test_an_import_leaves_the_switch_interval_alone(registry, settings, interpreter_changes, tmp_path):
    path = tmp_path / "one.csv"
    write_csv([dict.fromkeys(CSV_HEADERS, "") | {
        "name": "赵桂兰", "id_number": fresh_id_number(), "county_code": "410928", "township": "城关镇",
        "village": "东街社区", "living_arrangement": "alone", "status": ""}], path)
    conn = await connect(settings.database_url, "registry")
    try:
        job = await create_job(conn, actor="test", county_code=None, filename=path.name, sha256="0" * 64)
        outcome = await run_import(conn, job, path, scope_county=None)
    finally:
        await conn.close()
    assert outcome["status"] == "succeeded", outcome
    assert [c for c in interpreter_changes if c[0] == "sys.setswitchinterval"] == []
