"""The alerts app, once per session for every alerts test module (one app: one scheduler)."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="session")
async def alerts(settings, registry):
    from services.alerts.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://alerts") as client:
            client.app = app
            yield client
