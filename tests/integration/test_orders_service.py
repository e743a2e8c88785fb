"""The orders service against the real PostgreSQL and broker: the residents projection, catalog,
parties, entitlements and funding split, orders and their lifecycle with visit verification."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from tests.conftest import token_for
from tests.integration.orders_fixtures import (  # noqa: F401 - `orders` is a fixture
    HOME, new_caregiver, new_provider, new_resident, orders, place, projected, publish_residents, runtime_of,
    snapshot_event,
)


async def test_smoke_order_lifecycle(orders, settings):
    rid = await new_resident(orders, settings)
    provider = await new_provider(orders, settings)
    caregiver = await new_caregiver(orders, settings, provider)
    county = token_for(settings, "county", "410928")
    response = await place(orders, county, rid, provider)
    assert response.status_code == 201, response.text
    order = response.json()
    prov = token_for(settings, "provider", provider_id=provider)
    r = await orders.post(f"/v1/orders/{order['id']}/accept", headers=prov)
    assert r.status_code == 200, r.text
    r = await orders.post(f"/v1/orders/{order['id']}/assign", headers=prov, json={"caregiver_id": caregiver})
    assert r.status_code == 200, r.text
    cg = token_for(settings, "caregiver", caregiver_id=caregiver)
    start = datetime.now(timezone.utc) - timedelta(minutes=61)
    r = await orders.post(f"/v1/orders/{order['id']}/check-in", headers=cg,
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 10, "time": start.isoformat()})
    assert r.status_code == 200, r.text
    r = await orders.post(f"/v1/orders/{order['id']}/check-out", headers=cg,
                          json={"lat": HOME[0], "lon": HOME[1], "accuracy_m": 10})
    assert r.status_code == 200, r.text
    print(r.json())
