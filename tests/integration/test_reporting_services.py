"""Reporting folds the orders and alerts topics: order figures (by category, completion, time to
accept, on-time check-ins, EVV verification, satisfaction, subsidy spend by source) and alert
figures (acknowledged within 60 s and 180 s, medians and p90s, escalations, open alerts) per county
and the city, each event once, county tokens limited to their county and the city.

On a broker and a database of the test's own: the events here are made up (valid by the shared
contracts), and the figures are checked exactly, which the suite's shared topics (with the real
alerts service's events on them) would not allow."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from tests.conftest import token_for
from tests.integration.service_events import (
    ALERTS_TOPIC, ORDERS_TOPIC, alert_events, order_events, percentile, publish,
)
from tests.integration.support import eventually, scratch_database


@pytest.fixture
async def folding(pg_server_url, private_broker, settings):
    """A reporting app of the test's own: its own database and broker (all platform topics)."""
    from services.reporting.app import create_app
    from shared.messaging.kafka import ensure_topics
    from shared.messaging.topics import all_topic_names

    await ensure_topics(private_broker.bootstrap, all_topic_names(), 2)
    async with scratch_database(pg_server_url, f"eldercare_repfold_{uuid.uuid4().hex[:8]}") as url:
        own = settings.model_copy(update={"database_url": url, "kafka_bootstrap_servers": private_broker.bootstrap,
                                          "kafka_partitions": 2})
        app = create_app(own)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting") as c:
                c.app = app
                c.bootstrap = private_broker.bootstrap
                yield c


async def test_orders_and_alerts_are_folded_once_per_event_per_county_and_city(folding, settings):
    city, viewer = token_for(settings, "city"), token_for(settings, "viewer")
    puyang, qingfeng = token_for(settings, "county", "410928"), token_for(settings, "county", "410922")
    orders = [
        order_events("410928", "bathing", 60, check_in_min=5, outcome="completed", rating=5,
                     funding=(4800, 0, 200, 1000)),
        order_events("410928", "meal", 120, check_in_min=8, outcome="completed", rating=4, funding=(1000, 500, 0, 0)),
        order_events("410928", "bathing", 600, check_in_min=30, outcome="completed", evv="exception"),
        order_events("410928", "meal", 0, check_in_min=None, outcome="cancelled"),
        order_events("410922", "cleaning", 300, check_in_min=2, outcome="completed", rating=3,
                     funding=(2000, 0, 0, 3000)),
        order_events("410922", "home_doctor_visit", 90, check_in_min=None, outcome="no_show"),
        order_events("410922", "meal", 45, check_in_min=1, outcome="open"),
    ]
    alerts = [
        alert_events("410928", 12, 300), alert_events("410928", 45, 900), alert_events("410928", 150, None,
                                                                                    escalated=True),
        alert_events("410928", None, None, escalated=True), alert_events("410928", 5, 60, silenced=True),
        alert_events("410922", 30, 600, severity="warning"), alert_events("410922", 240, 1200, escalated=True),
    ]
    order_stream = [(oid, e) for oid, events in orders for e in events]
    alert_stream = [(aid, e) for aid, events in alerts for e in events]
    # Every event twice (a redelivery, the same id): folded once.
    await publish(folding.bootstrap, ORDERS_TOPIC, order_stream + order_stream[:9])
    await publish(folding.bootstrap, ALERTS_TOPIC, alert_stream + alert_stream)

    async def folded():
        view = (await folding.get("/v1/aggregates/city", headers=viewer)).json()
        lag = (await folding.get("/v1/admin/rebuild", headers=city)).json()["lag"]
        return view if lag == 0 and view["orders"]["placed"] == 7 and view["alerts"]["alerts"] == 6 else None

    city_view = await eventually(folded, timeout=90, message="the orders and alerts topics folded")
    o = city_view["orders"]
    assert o["by_category"] == {"健康管理": 1, "生活照料": 6}
    assert o["by_state"] == {"rated": 3, "completed": 1, "cancelled": 1, "no_show": 1, "checked_in": 1}
    assert (o["completed"], o["ended"], o["completion_rate"]) == (4, 6, round(4 / 6, 4))
    assert o["open"] == 1 and o["accepted"] == 6
    assert o["accept_seconds_median"] == percentile([60, 120, 600, 300, 90, 45], 0.5)
    assert o["accept_seconds_p90"] == percentile([60, 120, 600, 300, 90, 45], 0.9)
    # on time: checked in by the scheduled start plus 10 minutes (5, 8, 2, 1 of 5, 8, 30, 2, 1)
    assert (o["checked_in"], o["on_time_check_ins"], o["on_time_check_in_share"]) == (5, 4, 0.8)
    assert o["late"] == 1
    assert (o["evv_verified"], o["evv_exceptions"], o["evv_verification_rate"]) == (3, 1, 0.75)
    assert o["rated"] == 3 and o["rating_mean"] == 4.0 and o["ratings"] == {"1": 0, "2": 0, "3": 1, "4": 1, "5": 1}
    assert o["subsidy"]["spend_fen"] == {"government": 7800, "collective": 500, "social": 200, "personal": 4000}
    assert o["subsidy"]["subsidy_fen"] == 8500 and o["subsidy"]["settled_orders"] == 3
    a = city_view["alerts"]
    acks = [12, 45, 150, 30, 240]  # the silenced alert is not counted (as in the alerts service's KPIs)
    assert (a["alerts"], a["critical"], a["acknowledged"], a["silenced"]) == (6, 5, 5, 1)
    assert (a["acked_within_60s"], a["acked_within_180s"]) == (round(3 / 6, 4), round(4 / 6, 4))
    assert (a["ack_seconds_median"], a["ack_seconds_p90"]) == (percentile(acks, 0.5), percentile(acks, 0.9))
    assert (a["resolve_seconds_median"], a["resolve_seconds_p90"]) == (percentile([300, 900, 600, 1200], 0.5),
                                                                       percentile([300, 900, 600, 1200], 0.9))
    assert a["escalations"] == 3 and a["open"] == 2

    county = (await folding.get("/v1/aggregates/counties/410928", headers=puyang)).json()
    assert county["orders"]["placed"] == 4 and county["orders"]["evv_verification_rate"] == round(2 / 3, 4)
    assert county["orders"]["by_category"] == {"生活照料": 4}
    assert county["alerts"]["alerts"] == 4 and county["alerts"]["acked_within_60s"] == 0.5
    other = (await folding.get("/v1/aggregates/counties/410922", headers=qingfeng)).json()
    assert other["orders"]["placed"] == 3 and other["orders"]["subsidy"]["spend_fen"]["personal"] == 3000
    assert other["alerts"]["escalations"] == 1
    for code, scope in ((c, v) for c, v in (await folding.get("/v1/aggregates", headers=viewer)).json()["scopes"].items()
                        if c not in ("city", "410928", "410922")):
        assert scope["orders"]["placed"] == 0 and scope["alerts"]["alerts"] == 0, code
    # a county token: its own county and the city, never another's
    mine = (await folding.get("/v1/aggregates", headers=puyang)).json()
    assert set(mine["scopes"]) == {"city", "410928"}
    assert (await folding.get("/v1/aggregates/counties/410922", headers=puyang)).status_code == 403
    assert "resident_id" not in orjson.dumps(mine).decode()

    # a rebuild from the log ends with the same figures
    before = (await folding.get("/v1/aggregates", headers=city)).json()
    assert (await folding.post("/v1/admin/rebuild", headers=city)).status_code == 200

    async def rebuilt():
        status = (await folding.get("/v1/admin/rebuild", headers=city)).json()
        after = (await folding.get("/v1/aggregates", headers=city)).json()
        same = all(after["scopes"][s][k] == before["scopes"][s][k] for s in before["scopes"] for k in ("orders", "alerts"))
        return status["lag"] == 0 and status["applied"] > 0 and after["seq"] > before["seq"] and same

    await eventually(rebuilt, timeout=90, message="the rebuild gave the same order and alert figures")


async def test_an_order_event_of_an_unknown_county_goes_to_the_dlq(folding, settings):
    from tests.integration.support import json_records, read_topic

    viewer = token_for(settings, "viewer")
    oid, events = order_events("999999", "meal", 30, check_in_min=None, outcome="cancelled")
    good_id, good = order_events("410928", "meal", 30, check_in_min=None, outcome="cancelled")
    await publish(folding.bootstrap, ORDERS_TOPIC, [(oid, e) for e in events] + [(good_id, e) for e in good])

    async def counted():
        view = (await folding.get("/v1/aggregates/city", headers=viewer)).json()
        return view["orders"]["placed"] == 1 and view["orders"]["by_state"] == {"cancelled": 1}

    await eventually(counted, timeout=90, message="the good order folded")
    records = await read_topic(folding.bootstrap, ORDERS_TOPIC + ".dlq", expect=2, timeout=60)
    reasons = [v for _, v in json_records(records)]
    assert len(reasons) == 2 and all(v["data"]["order_id"] == oid for v in reasons)


async def test_the_reporting_models_and_migrations_agree(folding):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.reporting.service_store import metadata
    from shared.db import sqlalchemy_url
    from shared.migrations import autogenerate_options

    engine = create_async_engine(sqlalchemy_url(folding.app.state.runtime.settings.database_url))
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts=autogenerate_options("reporting")), metadata))
    finally:
        await engine.dispose()
    assert diff == []


async def test_the_orders_services_own_events_fold_into_its_own_figures(orders, pg_server_url, settings):
    """Driving the real orders service (on the orders tests' broker): a verified, rated visit, a
    cancelled order and an open one; a reporting of the test's own on that broker folds every order
    the service holds into the same counts per county as the service's own table."""
    from datetime import datetime, timedelta, timezone

    from services.reporting.app import create_app
    from shared.regions import load_counties
    from tests.integration.orders_fixtures import (
        HOME, new_caregiver, new_provider, new_resident, place, runtime_of,
    )

    def ago(minutes: float) -> str:
        return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()

    county = token_for(settings, "county", "410928")
    rid = await new_resident(orders, settings)
    provider = await new_provider(orders, settings)
    caregiver = await new_caregiver(orders, settings, provider)
    prov = token_for(settings, "provider", provider_id=provider)
    cg = token_for(settings, "caregiver", caregiver_id=caregiver)
    ids = []
    for _ in range(3):
        response = await place(orders, county, rid, provider)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    done, cancelled, _ = ids
    for path, headers, body in ((f"{done}/accept", prov, None), (f"{done}/assign", prov, {"caregiver_id": caregiver}),
                                (f"{done}/check-in", cg, {"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5,
                                                          "time": ago(65)}),
                                (f"{done}/check-out", cg, {"lat": HOME[0], "lon": HOME[1], "accuracy_m": 5}),
                                (f"{done}/rate", county, {"rating": 4}),
                                (f"{cancelled}/cancel", county, {"reason": "老人住院"})):
        r = await orders.post(f"/v1/orders/{path}", headers=headers, json=body)
        assert r.status_code == 200, (path, r.text)

    orders_runtime = runtime_of(orders)
    city = token_for(settings, "city")
    counties = list(load_counties())
    async with scratch_database(pg_server_url, f"eldercare_repfold_{uuid.uuid4().hex[:8]}") as url:
        app = create_app(settings.model_copy(update={
            "database_url": url, "kafka_bootstrap_servers": orders_runtime.settings.kafka_bootstrap_servers}))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting") as rep:

                async def theirs() -> dict:
                    async with orders_runtime.db.connection() as conn:
                        if await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                            return {}
                        rows = await conn.fetch(
                            """SELECT county_code, count(*) AS placed,
                                   count(*) FILTER (WHERE state IN ('completed', 'rated')) AS completed,
                                   count(*) FILTER (WHERE accepted_at IS NOT NULL) AS accepted,
                                   count(*) FILTER (WHERE check_in_at IS NOT NULL) AS checked_in,
                                   count(*) FILTER (WHERE state IN ('completed', 'rated') AND evv_status = 'verified')
                                       AS evv_verified,
                                   count(*) FILTER (WHERE evv_status = 'confirmed') AS evv_confirmed,
                                   count(rating) AS rated,
                                   coalesce(sum(government_fen) FILTER (WHERE settlement_month IS NOT NULL), 0) AS g,
                                   coalesce(sum(collective_fen) FILTER (WHERE settlement_month IS NOT NULL), 0) AS c,
                                   coalesce(sum(social_fen) FILTER (WHERE settlement_month IS NOT NULL), 0) AS s,
                                   coalesce(sum(personal_fen) FILTER (WHERE settlement_month IS NOT NULL), 0) AS p
                               FROM orders WHERE county_code = ANY($1::text[]) GROUP BY county_code""", counties)
                        states = await conn.fetch("SELECT county_code, state, count(*) AS n FROM orders "
                                                  "WHERE county_code = ANY($1::text[]) GROUP BY 1, 2", counties)
                    out = {r["county_code"]: {k: int(r[k]) for k in r.keys() if k != "county_code"} for r in rows}
                    for r in states:
                        out[r["county_code"]].setdefault("by_state", {})[r["state"]] = r["n"]
                    return out

                def ours(view: dict) -> dict:
                    o = view["orders"]
                    spend = o["subsidy"]["spend_fen"]
                    return {"placed": o["placed"], "completed": o["completed"], "accepted": o["accepted"],
                            "checked_in": o["checked_in"], "evv_verified": o["evv_verified"],
                            "evv_confirmed": o["evv_confirmed"], "rated": o["rated"], "g": spend["government"],
                            "c": spend["collective"], "s": spend["social"], "p": spend["personal"],
                            "by_state": o["by_state"]}

                async def agree():
                    expected = await theirs()
                    if not expected or (await rep.get("/v1/admin/rebuild", headers=city)).json()["lag"] != 0:
                        return None
                    scopes = (await rep.get("/v1/aggregates", headers=city)).json()["scopes"]
                    got = {c: ours(scopes[c]) for c in counties if scopes[c]["orders"]["placed"]}
                    return got if got == expected else None

                got = await eventually(agree, timeout=120, message="reporting's order figures agree with the "
                                                                   "orders service's table")
    assert got["410928"]["placed"] >= 3 and got["410928"]["rated"] >= 1 and got["410928"]["by_state"]["cancelled"] >= 1
