"""Helpers the orders tests share (the `orders` app fixture is in tests/conftest.py): residents
published to the registry's topic as the registry would, a provider with caregivers, an order."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime, timedelta, timezone

from shared.events import make_event
from shared.messaging.kafka import ensure_topics, make_producer
from shared.messaging.topics import RESIDENTS, all_topic_names
from tests.conftest import token_for

# Puyang County town centre; test homes are placed around it.
HOME = (35.7620, 115.0300)


def runtime_of(client):
    return client.app.state.runtime


async def publish_residents(settings, events) -> None:
    """Records on the registry's residents topic, keyed by resident id as the registry's relay does.
    `settings`: the orders app's own (runtime_of(orders).settings), whose broker is the orders tests' own."""
    await ensure_topics(settings.kafka_bootstrap_servers, all_topic_names(), settings.kafka_partitions)
    producer = make_producer(settings.kafka_bootstrap_servers, "orders-tests")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(RESIDENTS.name, event.to_json(), key=event.subject.encode())
    finally:
        await producer.stop()


def snapshot_event(rid: str, version: int = 1, event_type: str = "eldercare.resident.registered.v1", **kw):
    resident = {"resident_id": rid, "county_code": "410928", "name": "周秀珍", "birth_date": "1944-03-02",
                "gender": "female", "township": "城关镇", "village": "东街社区", "living_arrangement": "alone",
                "categories": [], "ability_level": 2, "status": "active", "family_bed": False, "version": version,
                "home_lat": HOME[0], "home_lon": HOME[1]}
    resident.update(kw)
    data = {"resident": resident} if event_type != "eldercare.resident.updated.v1" else {"resident": resident,
                                                                                          "changed": ["categories"]}
    return make_event(event_type, "registry", data, subject=rid, countycode=resident["county_code"])


async def projected(client, rid: str, version: int = 1, timeout: float = 60.0):
    """Wait until the orders projection holds the resident at `version` or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with runtime_of(client).db.connection() as conn:
            row = await conn.fetchrow("SELECT * FROM residents WHERE resident_id = $1", uuid.UUID(rid))
        if row is not None and row["version"] >= version:
            return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"resident {rid} v{version} did not reach the orders projection")


async def new_resident(client, settings, **kw) -> str:
    rid = str(uuid.uuid4())
    await publish_residents(runtime_of(client).settings, [snapshot_event(rid, **kw)])
    await projected(client, rid)
    return rid


async def new_provider(client, settings, county: str = "410928", capacity: int = 50, **prices) -> str:
    city = token_for(settings, "city")
    items = [{"service_code": code, "price_fen": price, "daily_capacity": capacity}
             for code, price in ({"cleaning": 4000, "bathing": 6000, "nursing_care": 8000, "meal": 1200,
                                  "visit": 2000} | prices).items()]
    response = await client.post("/v1/providers", headers=city, json={
        "name": "城关街道综合养老服务中心", "provider_type": "street_centre", "county_code": county, "items": items})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def new_caregiver(client, settings, provider_id: str, kind: str = "nurse", expires: date | None = None) -> str:
    city = token_for(settings, "city")
    response = await client.post("/v1/caregivers", headers=city, json={
        "provider_id": provider_id, "name": "李秀兰", "phone": "13800138000",
        "certificates": [{"kind": kind, "number": f"C-{uuid.uuid4().hex[:8]}", "level": "4",
                          "expires_on": (expires or date.today() + timedelta(days=365)).isoformat()}]})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def soon(hours: float = 2) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat()


async def place(client, headers, rid: str, provider_id: str, items=None, key: str | None = None, **kw):
    body = {"resident_id": rid, "provider_id": provider_id, "items": items or [{"service_code": "cleaning",
                                                                                 "quantity": 1}],
            "scheduled_start": soon(), "channel": "county_operator", **kw}
    return await client.post("/v1/orders", headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
                             json=body)
