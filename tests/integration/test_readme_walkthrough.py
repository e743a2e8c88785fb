"""The README's walk-through of one order, run exactly as written (its bash blocks, in order) against
real registry and orders processes (`eldercare serve`), a seeded synthetic city and the
`eldercare token` command — so the README cannot drift from what the services do.

The platform here is the test's own: a database and a broker of its own (the walk-through's
residents and provider never reach the suite's shared topics), the processes on free ports."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import orjson

from bench.common import ServiceProcess
from eldercare.infra import EmbeddedBroker, free_port
from shared.auth import issue_token
from shared.db import asyncpg_dsn, with_database
from shared.settings import PlatformSettings
from tests.conftest import STATE, TEST_PARTITIONS
from tests.integration.support import eventually

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- walkthrough:begin -->", "<!-- walkthrough:end -->"


def walkthrough_script() -> str:
    """The README's walk-through: every ```bash block between its markers, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "the README's walk-through markers"
    section = text[text.index(BEGIN):text.index(END)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 6, blocks
    return "\n".join(blocks)


async def _sql(url: str, query: str):
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def test_the_readme_walks_one_order_from_placement_to_settlement(pg_server_url, tmp_path):
    database = f"eldercare_test_{os.getpid()}_walk"
    asyncio.run(_sql(pg_server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    asyncio.run(_sql(pg_server_url, f'CREATE DATABASE "{database}"'))
    url = with_database(pg_server_url, database)
    secret = secrets.token_urlsafe(48)
    broker = EmbeddedBroker(free_port(), STATE / "logs" / "test-walkthrough-broker.log").start()
    env = {"JWT_SECRET": secret, "KAFKA_PARTITIONS": str(TEST_PARTITIONS), "SIMULATOR_EVENTS_PER_S": "0"}
    services: list[ServiceProcess] = []
    try:
        from shared.messaging.kafka import ensure_topics
        from shared.messaging.topics import all_topic_names

        asyncio.run(ensure_topics(broker.bootstrap, all_topic_names(), TEST_PARTITIONS))
        # The synthetic city, small, loaded through the registry's import path as `make up` does.
        seeded = subprocess.run(
            [sys.executable, "-m", "eldercare.cli", "seed", "--residents", "400", "--seed", "3",
             "--csv", str(tmp_path / "city.csv")], cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, **env, "DATABASE_URL": url})
        assert seeded.returncode == 0, seeded.stderr[-2000:]
        for name in ("registry", "orders"):
            services.append(ServiceProcess(name, url, broker.bootstrap, free_port(), extra_env=env))
        for service in services:
            service.wait_ready(180)
        registry, orders = services

        # Orders learns the residents from the registry's events (relay, broker, its consumer).
        registered = asyncio.run(_sql(url, "SELECT count(*) FROM registry.residents"))
        eventually(lambda: asyncio.run(_sql(url, "SELECT count(*) FROM orders.residents")) == registered,
                   timeout=120, message="the seeded residents in the orders projection")
        assert asyncio.run(_sql(url, "SELECT count(*) FROM orders.residents WHERE home_lat IS NULL")) == 0

        script = walkthrough_script() + '\necho "RESULT $ORDER $PROVIDER $CAREGIVER $RESIDENT"\n'
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, **env, "REGISTRY_PORT": str(registry.port), "ORDERS_PORT": str(orders.port)})
        assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        order_id, provider_id, caregiver_id, resident_id = run.stdout.strip().splitlines()[-1].split()[1:]
        uuid.UUID(order_id)

        # What the walk-through did, as the city sees it.
        settings = PlatformSettings(_env_file=None, jwt_secret=secret)
        city = {"Authorization": f"Bearer {issue_token(settings, 'city', subject='test')}"}
        order = httpx.get(f"{orders.base_url}/v1/orders/{order_id}", headers=city).json()
        assert (order["state"], order["provider_id"], order["caregiver_id"], order["resident_id"]) == (
            "completed", provider_id, caregiver_id, resident_id)
        assert order["evv"]["status"] == "confirmed" and "short_visit" in order["evv"]["exceptions"]
        assert order["evv"]["check_in"]["distance_m"] < 1 and order["evv"]["check_out"]["distance_m"] < 1
        assert order["price_fen"] == 4000 == sum(order["funding"].values())
        # One order for that key, though the walk-through sent it twice.
        placed = httpx.get(f"{orders.base_url}/v1/orders", params={"provider": provider_id}, headers=city).json()
        assert [o["id"] for o in placed["orders"]] == [order_id]
        statement = httpx.get(f"{orders.base_url}/v1/settlements",
                              params={"county": "410928", "provider": provider_id}, headers=city).json()
        [line] = statement["providers"][0]["lines"]
        assert line["order_id"] == order_id and statement["totals"]["price_fen"] == 4000
        # The script printed the statement's lines last.
        assert f'"order_id": "{order_id}"' in run.stdout
        assert orjson.loads(run.stdout[run.stdout.index('{\n  "month"'):run.stdout.rindex("RESULT")])[
            "totals"]["orders"] == 1
    finally:
        for service in services:
            service.stop()
        broker.stop()
        asyncio.run(_sql(pg_server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
