"""Issue 8's own scenario with the real services: the registry and reporting run as processes on a
broker of the test's own, under its supervisor, while a county keeps registering residents. The
broker is killed; the supervisor starts it again, empty. Reporting's /v1/consistency is clean again
within 60 s of the broker's return, every registration is counted once, and the registry's relay
logged the loss once."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time

import httpx

from eldercare.infra import BrokerSupervisor, free_port, wait_for_port
from shared.auth import issue_token
from shared.messaging.topics import all_topic_names
from shared.settings import PlatformSettings
from tests.conftest import fresh_id_number
from tests.integration.support import eventually, scratch_database, stop_processes
from tests.integration.test_consumer_crash import ROOT, eldercare_process

PARTITIONS = 2
LOST = "broker lost its log; replaying the retained outbox"


async def test_broker_killed_while_counties_register_is_consistent_within_60s_and_logged_once(
        pg_server_url, private_broker, unique, tmp_path):
    async with scratch_database(pg_server_url, f"eldercare_test_loss_{unique}_{os.getpid()}") as url:
        recovered, registered = await _kill_the_broker_under_registrations(url, private_broker, unique, tmp_path)
    assert recovered < 60
    print(f"broker return -> consistent: {recovered:.1f}s, {registered} registrations")


async def _kill_the_broker_under_registrations(url: str, private_broker, unique: str, tmp_path) -> tuple[float, int]:
    registry_port, reporting_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": url,
           "KAFKA_BOOTSTRAP_SERVERS": private_broker.bootstrap, "KAFKA_PARTITIONS": str(PARTITIONS),
           "REGISTRY_PORT": str(registry_port), "REPORTING_PORT": str(reporting_port), "REGISTRY_WORKERS": "1",
           "RELAY_CHECK_INTERVAL_S": "0.5", "LOG_JSON": "false", "ELDERCARE_STATE_DIR": str(tmp_path),
           "JWT_SECRET": secrets.token_urlsafe(48)}
    settings = PlatformSettings(jwt_secret=env["JWT_SECRET"])
    county = {"Authorization": f"Bearer {issue_token(settings, 'county', county='410928')}"}
    city = {"Authorization": f"Bearer {issue_token(settings, 'city')}"}
    supervisor = BrokerSupervisor(private_broker, all_topic_names(), PARTITIONS,
                                  say=logging.getLogger("supervisor").warning)
    await asyncio.to_thread(supervisor.check)  # the topics, as the launcher creates them
    registry_log = f"test-loss-{unique}-registry.log"
    processes = [eldercare_process(["serve", "registry"], env, registry_log),
                 eldercare_process(["serve", "reporting"], env, f"test-loss-{unique}-reporting.log")]
    supervisor.start()
    registered = 0
    try:
        for port in (registry_port, reporting_port):
            await asyncio.to_thread(wait_for_port, port, timeout=90)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{registry_port}", timeout=30) as registry, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{reporting_port}", timeout=30) as reporting:
            stop = asyncio.Event()

            async def county_registering() -> None:
                nonlocal registered
                while not stop.is_set():
                    body = {"name": "李桂兰", "id_number": fresh_id_number(), "county_code": "410928",
                            "township": "城关镇", "village": "东街社区", "living_arrangement": "alone"}
                    response = await registry.post("/v1/residents", json=body, headers=county)
                    assert response.status_code == 201, response.text  # the outbox holds it meanwhile
                    registered += 1
                    await asyncio.sleep(0.05)

            async def consistent() -> dict | None:
                response = await reporting.get("/v1/consistency", headers=city)
                body = response.json() if response.status_code == 200 else None
                return body if body and body["consistent"] else None

            async def registry_count() -> int:
                stats = (await registry.get("/v1/stats/residents", headers=city)).json()
                return sum(stats["counts"]["city"]["status"].values())  # every entry counts in one status

            traffic = asyncio.create_task(county_registering())
            await eventually(lambda: _at_least(lambda: registered, 30), timeout=60, message="registering")
            await eventually(consistent, timeout=60, message="consistent before the loss")
            private_broker.kill()
            await eventually(lambda: _at_least(lambda: supervisor.restarts, 1), timeout=20, message="restarted")
            returned = time.monotonic()
            await asyncio.sleep(3)  # registrations go on after the return, too
            stop.set()
            await traffic
            await eventually(consistent, timeout=60, message="consistent within 60 s of the broker's return")
            recovered = time.monotonic() - returned
            assert await registry_count() == registered
    finally:
        supervisor.stop()
        stop_processes(processes)
    with open(os.path.join(ROOT, ".state", "logs", registry_log)) as log:
        assert sum(LOST in line for line in log) == 1  # one loss, one replay
    return recovered, registered


async def _at_least(value, n: int) -> bool:
    return value() >= n
