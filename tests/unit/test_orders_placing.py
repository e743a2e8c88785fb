"""Placing an order without a server: the checks and the pricing are pure (services/orders/handlers.py
check_order, price_order); the order row is built, not read back, so it must match the model."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import ARRAY
from sqlalchemy.dialects.postgresql import JSONB

from services.orders import store
from services.orders.domain.errors import ItemNotOffered, OverCapacity
from services.orders.domain.funding import Benefit
from services.orders.domain.policies import PolicyVersion, benefits_for, resolve
from services.orders.handlers import PlaceOrder, check_order, price_order
from services.orders.settings import OrdersSettings
from shared.auth import Principal, Role
from shared.idempotency import StoredResponse, stored_answer
from shared.messaging.topics import ORDERS
from shared.problems import Unprocessable

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=timezone.utc)
COUNTY = "410928"


def facts(**kw) -> dict:
    """What store.order_facts reads for one order."""
    base = dict(resident_id=uuid.uuid4(), county_code=COUNTY, name="周秀珍", birth_date=date(1940, 5, 1),
                township="城关镇", village="东街社区", living_arrangement="alone", categories=["minimum_allowance"],
                ability_level=0, status="active", family_bed=False, home_lat=35.7, home_lon=115.0, date_of_death=None,
                version=1, caregiver_provider=None,
                provider={"id": "p1", "county_code": COUNTY, "active": True},
                offers={"cleaning": [4000, 10], "meal": [1500, 3]})
    base.update(kw)
    return base


def command(items, start=NOW + timedelta(hours=3)) -> PlaceOrder:
    return PlaceOrder(resident_id=uuid.uuid4(), provider_id="p1", items=items, scheduled_start=start,
                      channel="county_operator")


CITY = Principal("city:test", Role.CITY)
POLICY = resolve([PolicyVersion(COUNTY, 1, date(2020, 1, 1), None, (
    Benefit("dibao", "低保", "government", 80, 5000, {"categories_any": ["minimum_allowance"]}),
    Benefit("village", "村集体", "collective", 10, 100000, {}),
), {"government": 100000, "collective": 700, "social": 0})], COUNTY, date(2026, 12, 2))


def test_the_placed_columns_and_their_defaults_are_the_order_model():
    columns = store.Order.__table__.columns
    assert set(store.PLACED_COLUMNS).isdisjoint(store.UNPLACED_DEFAULTS)
    assert set(store.PLACED_COLUMNS) | set(store.UNPLACED_DEFAULTS) == set(columns.keys())
    for name, value in store.UNPLACED_DEFAULTS.items():
        column = columns[name]
        if column.server_default is None:
            assert value is None and column.nullable, name
            continue
        text = column.server_default.arg.text
        expected = ([] if isinstance(column.type, ARRAY) else {}) if text == "'{}'" and not isinstance(
            column.type, JSONB) else {"0": 0, "1": 1, "false": False, "true": True}[text]
        assert value == expected, name


def test_a_priced_order_adds_up_and_takes_caps_budget_and_capacity_in_key_order():
    cmd = command([("meal", 2), ("cleaning", 1)])
    checked = check_order(CITY, cmd, OrdersSettings(), facts(), NOW)
    benefits = benefits_for(POLICY, checked.resident, checked.day)
    placed = price_order(CITY, cmd, OrdersSettings(), checked, POLICY, benefits, used={"dibao": 1000},
                         spent={"collective": 500}, now=NOW)
    order = placed.order
    assert order["price_fen"] == 2 * 1500 + 4000
    assert sum(order[f"{s}_fen"] for s in ("government", "collective", "social", "personal")) == order["price_fen"]
    # 4000 fen of the dibao cap were left; 200 fen of the collective budget
    assert order["government_fen"] == 4000 and order["collective_fen"] == 200
    assert placed.caps == [("dibao", 4000, 5000), ("village", 200, 100000)]
    assert placed.spend == [("collective", 200, 700), ("government", 4000, 100000)]
    assert placed.load == [("cleaning", 1, 10), ("meal", 2, 3)]
    assert order["entitlement_use"] == {"dibao": 4000, "village": 200}
    assert order["scheduled_start"].utcoffset() == timedelta(0) and order["version"] == 1
    event_id, topic, key, payload, _ = placed.outbox
    assert key == str(order["id"]) and topic == ORDERS.name and b"order.placed" in payload


def test_a_line_over_the_daily_capacity_or_not_offered_is_refused_before_anything_is_taken():
    with pytest.raises(OverCapacity) as over:
        check_order(CITY, command([("cleaning", 1), ("meal", 4)]), OrdersSettings(), facts(), NOW)
    assert over.value.field == "items[1].quantity"
    with pytest.raises(ItemNotOffered) as missing:
        check_order(CITY, command([("bathing", 1)]), OrdersSettings(), facts(), NOW)
    assert missing.value.field == "items[0].service_code"


def test_a_claimed_key_is_new_and_a_stored_one_replays_only_its_own_request():
    claimed = {"idem_claimed": True, "idem_hash": "h", "idem_status": 0, "idem_body": None, "idem_headers": None}
    assert stored_answer(claimed, "h") is None
    earlier = {**claimed, "idem_claimed": False, "idem_status": 201, "idem_body": {"id": "o1"},
               "idem_headers": {"ETag": '"o1.1"'}}
    assert stored_answer(earlier, "h") == StoredResponse(201, {"id": "o1"}, {"ETag": '"o1.1"'})
    with pytest.raises(Unprocessable) as other:
        stored_answer(earlier, "another request")
    assert other.value.field == "Idempotency-Key"
