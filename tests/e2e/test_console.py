"""The duty operator's console in a real headless Chromium, against the registry and alerts
services run as real processes on their own database and broker: an SOS posted to the gateway
appears on the page, is acknowledged from it, and the timeline shows both times. Screenshots (Chinese
and English) go to docs/ on every run."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from eldercare.infra import free_port
from tests.conftest import fresh_id_number, token_for
from tests.e2e.test_dashboard import (
    DOCS, PARTITIONS, Service, _create_topics, _recreate_database, launch_chromium, require_chromium,
)

DATABASE = f"eldercare_e2e_alerts_{os.getpid()}"
pytestmark = pytest.mark.slow


@contextmanager
def run_services(pg_server_url: str, private_broker, tmp_path: Path):
    from shared.settings import PlatformSettings

    database_url = _recreate_database(pg_server_url, DATABASE)
    _create_topics(private_broker.bootstrap)
    settings = PlatformSettings(database_url=database_url, kafka_bootstrap_servers=private_broker.bootstrap,
                                log_json=False, kafka_partitions=PARTITIONS, jwt_secret=secrets.token_urlsafe(48))
    ports = {"registry": free_port(), "alerts": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
    env.update(DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=private_broker.bootstrap,
               REGISTRY_PORT=str(ports["registry"]), ALERTS_PORT=str(ports["alerts"]), RELAY_CHECK_INTERVAL_S="0.5",
               LOG_JSON="false", KAFKA_PARTITIONS=str(PARTITIONS), RUN_WORKERS_IN_API="true",
               SERVICE_HOST="127.0.0.1", JWT_SECRET=settings.jwt_secret, PYTHONUNBUFFERED="1", REGISTRY_WORKERS="1")
    services: dict[str, Service] = {}
    try:
        for name, port in ports.items():
            services[name] = Service(name, port, env, tmp_path)
        deadline = time.monotonic() + 60
        for service in services.values():
            service.wait_ready(deadline)
        yield settings, services["registry"], services["alerts"]
    finally:
        for service in services.values():
            service.stop()
        try:
            _recreate_database(pg_server_url, DATABASE, create=False)
        except Exception:  # noqa: BLE001 - tidying only
            pass


def sos(resident_id: str, county: str) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}",
            "type": "eldercare.county.device.sos.v1", "subject": resident_id, "countycode": county,
            "data": {"device_id": "SOS-E2E-1", "lat": 35.76, "lon": 115.03}}


def test_sos_posted_to_the_gateway_appears_live_is_acknowledged_and_the_timeline_shows_both_times(
        pg_server_url, private_broker, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    chromium = require_chromium()
    with run_services(pg_server_url, private_broker, tmp_path) as (settings, registry, alerts):
        county = "410928"
        headers = token_for(settings, "county", county)
        with httpx.Client(base_url=registry.url, headers=headers, timeout=10) as reg:
            made = reg.post("/v1/residents", json={
                "name": "张桂芳", "id_number": fresh_id_number(), "county_code": county, "township": "城关镇",
                "village": "东街社区", "living_arrangement": "alone", "emergency_contact": "张建军",
                "emergency_phone": "13800001234"})
            assert made.status_code == 201, made.text
            rid = made.json()["id"]
            deadline = time.monotonic() + 60
            with httpx.Client(base_url=alerts.url, headers=headers, timeout=10) as api:
                # The console is opened before the SOS, so it must arrive over the live stream.
                raw = headers["Authorization"].removeprefix("Bearer ")
                with sync_playwright() as p:
                    browser = launch_chromium(p, chromium)
                    page = browser.new_page(viewport={"width": 1600, "height": 900})
                    page.goto(f"{alerts.url}/?token={raw}")
                    expect(page.locator('[data-testid="conn-status"]')).to_have_attribute("data-state", "live",
                                                                                          timeout=30_000)
                    assert "token=" not in page.url
                    while time.monotonic() < deadline:  # the resident reaches the alerts projection
                        if api.get("/v1/rules").status_code == 200 and _projected(api, rid):
                            break
                        time.sleep(0.3)
                    posted = time.monotonic()
                    assert reg.post("/v1/events", json=[sos(rid, county)]).status_code == 200
                    card = page.locator('[data-testid="alert-card"][data-severity="critical"]').first
                    expect(card).to_be_visible(timeout=20_000)
                    print(f"\nSOS on the page {time.monotonic() - posted:.2f}s after the POST")
                    expect(card).to_contain_text("张桂芳")
                    # The registry's events carry no contact yet (nor any phone number): the slot is shown.
                    expect(card).to_contain_text("紧急联系人")
                    expect(card.locator('[data-testid="countdown"]')).to_contain_text("升级倒计时")
                    card.click()
                    expect(page.locator('[data-testid="timeline-step"][data-kind="raised"]')).to_have_count(1)
                    page.screenshot(path=str(DOCS / "console.png"))
                    page.locator('[data-testid="ack-button"]').click()
                    acked = page.locator('[data-testid="timeline-step"][data-kind="acknowledged"]')
                    expect(acked).to_have_count(1, timeout=10_000)
                    expect(card).to_have_attribute("data-status", "acknowledged", timeout=10_000)
                    times = page.locator('[data-testid="timeline-step"] time')
                    assert all(times.nth(i).get_attribute("datetime") for i in range(times.count()))
                    assert times.count() == 2
                    alert_id = card.get_attribute("data-alert-id")
                    served = api.get(f"/v1/alerts/{alert_id}").json()
                    assert served["status"] == "acknowledged" and served["acknowledged_at"] is not None
                    page.locator('[data-testid="lang-switch"]').click()
                    expect(page.locator("h1")).to_have_text("Elder emergency duty console")
                    page.screenshot(path=str(DOCS / "console-en.png"))
                    browser.close()


def _projected(api: httpx.Client, resident_id: str) -> bool:
    # The alerts API lists no residents; an alert for the resident tells us nothing yet either, so
    # ask for the KPIs' visit coverage, which counts projected residents of a watched group.
    kpis = api.get("/v1/kpis").json()
    cover = (kpis.get("counties", {}).get("410928") or {}).get("visit_coverage") or {}
    return (cover.get("owed") or 0) >= 1
