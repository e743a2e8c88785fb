"""Shared pieces of the alerts integration tests: the app, residents registered through the
registry, events posted to its gateway, waiting for alerts."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.conftest import fresh_id_number, token_for

SOS = "eldercare.county.device.sos.v1"
FALL = "eldercare.county.device.fall.v1"
VITALS = "eldercare.county.device.vitals.v1"
ACTIVITY = "eldercare.county.device.activity.v1"
ALARM = "eldercare.county.device.alarm.v1"


async def wait_for(check, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last})")


def cloud_event(type_: str, data: dict, subject: str | None, county: str = "410928", **extra) -> dict:
    e = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}", "type": type_,
         "countycode": county, "data": data, **extra}
    if subject:
        e["subject"] = subject
    return e


async def register(registry, settings, county: str = "410928", *, living: str = "alone", birth_year: int | None = None,
                   categories: list[str] | None = None, name: str = "王秀英") -> str:
    id_number = fresh_id_number(county, birth_year) if birth_year is not None else fresh_id_number()
    body = {"name": name, "id_number": id_number, "county_code": county, "township": "城关镇",
            "village": "东街社区", "living_arrangement": living, "categories": categories or [],
            "emergency_contact": "王建国", "emergency_phone": "13800001234"}
    response = await registry.post("/v1/residents", headers=token_for(settings, "county", county), json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def post(registry, settings, events: list[dict], county: str = "410928") -> list[dict]:
    response = await registry.post("/v1/events", headers=token_for(settings, "county", county), json=events)
    assert response.status_code in (200, 207), response.text
    results = response.json()["results"]
    assert all(r["status"] == "accepted" for r in results), results
    return results


async def projected(alerts, resident_id: str) -> None:
    """Wait until the alerts service's projection holds the resident."""
    runtime = alerts.app.state.runtime

    async def check():
        async with runtime.db.connection() as conn:
            return await conn.fetchval("SELECT 1 FROM residents WHERE resident_id = $1", uuid.UUID(resident_id))

    await wait_for(check, 60)


async def alerts_of(alerts, headers, **params) -> list[dict]:
    response = await alerts.get("/v1/alerts", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def wait_alert(alerts, headers, resident_id: str, cause: str, *, count: int = 1, timeout: float = 60) -> dict:
    async def check():
        items = await alerts_of(alerts, headers, resident_id=resident_id, cause=cause)
        return next((a for a in items if a["count"] >= count), None)

    return await wait_for(check, timeout)
