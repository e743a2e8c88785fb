"""Reporting folds the real alerts service's events into the same response figures as the
service's own /v1/kpis: an SOS posted to the registry's gateway, acknowledged and resolved, and
every alert the session's alerts service has raised before.

The alerts topic is copied as it is (key and value) from the suite's broker to this test's own, where
a reporting app of the test's own (its own database) folds it: on the suite's broker it would join the
suite's reporting consumer group and take partitions from it."""

from __future__ import annotations

import uuid

import httpx

from shared.messaging.topics import ALERTS
from shared.regions import load_counties
from tests.conftest import token_for
from tests.integration.alerts.support import SOS, cloud_event, post, projected, register, wait_alert
from tests.integration.support import eventually, json_records, read_topic, scratch_database

FIGURES = ("alerts", "critical", "acknowledged", "acked_within_60s", "acked_within_180s", "ack_seconds_median",
           "ack_seconds_p90", "resolve_seconds_median", "resolve_seconds_p90", "escalations")


async def test_reporting_folds_the_alerts_services_events_into_its_own_kpis(registry, alerts, settings, pg_server_url,
                                                                           private_broker):
    from aiokafka import AIOKafkaProducer

    from services.reporting.app import create_app
    from shared.messaging.kafka import ensure_topics
    from shared.messaging.topics import all_topic_names

    puyang, city = token_for(settings, "county", "410928"), token_for(settings, "city")
    rid = await register(registry, settings)
    await projected(alerts, rid)
    await post(registry, settings, [cloud_event(SOS, {"device_id": f"SOS-{uuid.uuid4().hex[:6]}"}, rid)])
    sos = await wait_alert(alerts, puyang, rid, "sos")
    assert (await alerts.post(f"/v1/alerts/{sos['id']}/ack", headers=puyang)).status_code == 200
    done = await alerts.post(f"/v1/alerts/{sos['id']}/resolve", headers=puyang, json={"resolution": "false_alarm"})
    assert done.status_code == 200, done.text

    await ensure_topics(private_broker.bootstrap, all_topic_names(), 2)
    copied: set[tuple[int, int]] = set()
    producer = AIOKafkaProducer(bootstrap_servers=private_broker.bootstrap)
    await producer.start()
    counties = set(load_counties())
    try:
        async with scratch_database(pg_server_url, f"eldercare_repfold_{uuid.uuid4().hex[:8]}") as url:
            app = create_app(settings.model_copy(update={"database_url": url,
                                                         "kafka_bootstrap_servers": private_broker.bootstrap,
                                                         "kafka_partitions": 2}))
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as rep:

                    async def agree():
                        # What the alerts service has published by now (its outbox drained), copied once each.
                        runtime = alerts.app.state.runtime
                        async with runtime.db.connection() as conn:
                            if await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                                return None
                            # Only alerts the service still keeps: its history pruning (another test)
                            # deletes old ones, which its KPIs then leave out and reporting keeps.
                            kept = {str(r["id"]) for r in await conn.fetch("SELECT id FROM alerts")}
                        for record, event in json_records(await read_topic(settings.kafka_bootstrap_servers,
                                                                           ALERTS.name, idle=0.5)):
                            if str(event.get("data", {}).get("alert_id")) not in kept:
                                continue
                            if (record.partition, record.offset) not in copied:
                                await producer.send_and_wait(ALERTS.name, record.value, key=record.key)
                                copied.add((record.partition, record.offset))
                        kpis = (await alerts.get("/v1/kpis", headers=city)).json()["counties"]
                        if (await rep.get("/v1/admin/rebuild", headers=city)).json()["lag"] != 0:
                            return None
                        scopes = (await rep.get("/v1/aggregates", headers=city)).json()["scopes"]
                        theirs = {c: {k: v[k] for k in FIGURES} for c, v in kpis.items() if c in counties and v["alerts"]}
                        ours = {c: {k: scopes[c]["alerts"][k] for k in FIGURES} for c in counties
                                if scopes[c]["alerts"]["alerts"]}
                        return ours if ours == theirs else None

                    ours = await eventually(agree, timeout=120, interval=1.0,
                                            message="reporting's alert figures agree with the alerts service's KPIs")
    finally:
        await producer.stop()
    assert ours["410928"]["acknowledged"] >= 1 and ours["410928"]["resolve_seconds_median"] is not None
