"""The alerts service against the real PostgreSQL and broker: events posted to the registry's
gateway are detected, joined, correlated and answered; timers fire once; bad records are
dead-lettered with their reason."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaProducer

from tests.conftest import token_for
from tests.integration.alerts.support import (
    ALARM, FALL, SOS, VITALS, alerts_of, cloud_event, post, projected, register, wait_alert, wait_for,
)
from tests.integration.support import json_records, read_topic


async def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_sos_is_critical_at_once_repeats_join_and_a_fall_minutes_later_is_the_same_incident(
        registry, alerts, settings):
    puyang = token_for(settings, "county", "410928")
    rid = await register(registry, settings)
    await projected(alerts, rid)
    await post(registry, settings, [cloud_event(SOS, {"device_id": "SOS-1", "lat": 35.7, "lon": 115.0}, rid)])
    sos = await wait_alert(alerts, puyang, rid, "sos")
    assert sos["severity"] == "critical" and sos["status"] == "open" and sos["rule_version"].startswith("city:")
    assert sos["escalate_at"] is not None and sos["resident"]["emergency_contact"] in (None, "王建国")
    await post(registry, settings, [cloud_event(SOS, {"device_id": "SOS-1"}, rid)])
    joined = await wait_alert(alerts, puyang, rid, "sos", count=2)
    assert joined["id"] == sos["id"]
    await post(registry, settings, [cloud_event(FALL, {"device_id": "SOS-1", "confidence": 0.9}, rid)])
    fall = await wait_alert(alerts, puyang, rid, "fall")
    assert fall["incident_id"] == sos["incident_id"] and fall["id"] != sos["id"]


async def test_another_county_neither_lists_nor_reads_the_alert_and_a_viewer_sees_the_name_masked(
        registry, alerts, settings):
    puyang, qingfeng = token_for(settings, "county", "410928"), token_for(settings, "county", "410922")
    rid = await register(registry, settings, name="李桂兰")
    await projected(alerts, rid)
    await post(registry, settings, [cloud_event(SOS, {"device_id": "SOS-2", "lat": 35.7, "lon": 115.0}, rid)])
    alert = await wait_alert(alerts, puyang, rid, "sos")
    assert alert["resident"]["name"] == "李桂兰" and alert["details"]["lat"] == 35.7
    assert all(a["id"] != alert["id"] for a in await alerts_of(alerts, qingfeng))
    assert (await alerts.get(f"/v1/alerts/{alert['id']}", headers=qingfeng)).status_code == 404
    other = await alerts.get("/v1/alerts", headers=qingfeng, params={"county_code": "410928"})
    assert other.status_code == 403 and other.json()["field"] == "county_code"
    viewer = (await alerts.get(f"/v1/alerts/{alert['id']}", headers=token_for(settings, "viewer"))).json()
    assert "resident" in viewer, viewer
    assert viewer["resident"]["name"] == "李**" and "lat" not in viewer["details"]
    assert viewer["resident"]["emergency_contact"] is None
    caregiver = await alerts.get("/v1/alerts", headers=token_for(settings, "caregiver", caregiver_id="c1"))
    assert caregiver.status_code == 403


async def test_vitals_hovering_at_the_limit_raise_one_alert_with_a_count(registry, alerts, settings):
    puyang = token_for(settings, "county", "410928")
    rid = await register(registry, settings, living="with_family")
    await projected(alerts, rid)
    base = datetime.now(timezone.utc)
    readings = [135, 128, 133, 127, 136]
    await post(registry, settings, [
        cloud_event(VITALS, {"device_id": "B-1", "heart_rate": hr}, rid, time=(base + timedelta(seconds=i)).isoformat())
        for i, hr in enumerate(readings)])
    alert = await wait_alert(alerts, puyang, rid, "heart_rate_high", count=3)
    await asyncio.sleep(1.0)
    items = await alerts_of(alerts, puyang, resident_id=rid)
    assert [(a["cause"], a["count"]) for a in items] == [("heart_rate_high", 3)]
    assert alert["details"]["limit"] == 130


async def test_wearable_codes_map_to_causes_and_a_wearer_cancel_is_noted_on_the_open_sos(registry, alerts, settings):
    puyang = token_for(settings, "county", "410928")
    rid = await register(registry, settings)
    await projected(alerts, rid)
    await post(registry, settings, [cloud_event(ALARM, {"device_id": "W-1", "code": "LOW_BATTERY"}, rid),
                                    cloud_event(ALARM, {"device_id": "W-1", "code": "SOS"}, rid)])
    battery = await wait_alert(alerts, puyang, rid, "device_low_battery")
    assert battery["severity"] == "warning"
    sos = await wait_alert(alerts, puyang, rid, "sos")
    await post(registry, settings, [cloud_event(ALARM, {"device_id": "W-1", "code": "SOS_CANCEL"}, rid)])
    cancelled = await wait_alert(alerts, puyang, rid, "sos", count=2)
    assert cancelled["id"] == sos["id"] and cancelled["details"]["note"] == "cancelled by the wearer"
    assert cancelled["status"] == "open"


async def test_unknown_resident_raises_a_data_quality_alert_and_malformed_records_go_to_the_dlq(
        alerts, settings, bootstrap):
    city = token_for(settings, "city")
    ghost = str(uuid.uuid4())
    good = cloud_event(VITALS, {"device_id": "B-9", "heart_rate": 80}, ghost, id=f"ghost-{uuid.uuid4()}")
    bad_value = cloud_event(VITALS, {"device_id": "B-9", "heart_rate": 400}, ghost, id=f"bad-{uuid.uuid4()}")
    await produce(bootstrap, "eldercare.registry.ingest.v1",
                  [orjson.dumps(good), b"{not json", orjson.dumps(bad_value)], key=ghost.encode())
    alert = await wait_alert(alerts, city, ghost, "unknown_resident")
    assert alert["severity"] == "warning" and alert["details"]["device_id"] == "B-9"

    async def dead():
        records = await read_topic(bootstrap, "eldercare.registry.ingest.v1.dlq", idle=1.0)
        mine = [r for r in records if dict(r.headers).get("dlq-consumer") == b"alerts-ingest"]
        reasons = [dict(r.headers)["dlq-reason"].decode() for r in mine]
        return reasons if any("heart_rate" in x for x in reasons) and any("not JSON" in x for x in reasons) else None

    reasons = await wait_for(dead, 60, interval=1.0)
    assert any("heart_rate: Input should be less than or equal to 300" in r for r in reasons), reasons


async def test_ack_dispatch_resolve_timeline_is_timestamped_and_emitted_and_the_kpis_count_it(
        registry, alerts, settings, bootstrap):
    puyang = token_for(settings, "county", "410928")
    rid = await register(registry, settings)
    await projected(alerts, rid)
    await post(registry, settings, [cloud_event(SOS, {"device_id": "SOS-3"}, rid)])
    alert = await wait_alert(alerts, puyang, rid, "sos")
    url = f"/v1/alerts/{alert['id']}"
    acked = await alerts.post(f"{url}/ack", headers={**puyang, "Idempotency-Key": f"ack-{alert['id']}"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged" and acked.json()["escalate_at"] is None
    again = await alerts.post(f"{url}/ack", headers={**puyang, "Idempotency-Key": f"ack-{alert['id']}"})
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    twice = await alerts.post(f"{url}/ack", headers=puyang)
    assert twice.status_code == 409 and twice.json()["type"].endswith("/alert-acknowledged")
    bad = await alerts.post(f"{url}/dispatch", headers=puyang, json={"targets": ["helicopter"]})
    assert bad.status_code == 422 and bad.json()["field"].startswith("targets")
    sent = await alerts.post(f"{url}/dispatch", headers=puyang, json={"targets": ["emergency_contact", "ambulance_120"]})
    assert sent.status_code == 200 and sent.json()["dispatch"][0]["targets"] == ["emergency_contact", "ambulance_120"]
    done = await alerts.post(f"{url}/resolve", headers=puyang, json={"resolution": "taken_to_hospital"})
    assert done.status_code == 200
    timeline = done.json()["timeline"]
    # Dispatching the emergency contact calls them; this resident has none on file, which the timeline says.
    assert [s["kind"] for s in timeline] == ["raised", "acknowledged", "dispatched", "notified", "resolved"]
    assert timeline[3]["data"]["outcome"] == "no_contact"
    assert all(s["at"] for s in timeline)
    assert (await alerts.post(f"{url}/escalate", headers=puyang)).status_code == 409

    async def emitted():
        records = await read_topic(bootstrap, "eldercare.alerts.alerts.v1", idle=1.0)
        kinds = [orjson.loads(r.value)["type"] for r in records if r.key == alert["id"].encode()]
        return kinds if "eldercare.alert.resolved.v1" in kinds else None

    kinds = await wait_for(emitted, 60, interval=1.0)
    assert kinds == ["eldercare.alert.raised.v1", "eldercare.alert.acknowledged.v1",
                     "eldercare.alert.dispatched.v1", "eldercare.alert.notified.v1", "eldercare.alert.resolved.v1"]
    kpis = (await alerts.get("/v1/kpis", headers=puyang)).json()
    county = kpis["counties"]["410928"]
    assert county["acknowledged"] >= 1 and county["ack_seconds_median"] is not None
    assert 0 <= county["acked_within_60s"] <= county["acked_within_180s"] <= 1


async def test_cursor_pagination_walks_every_alert_once(alerts, settings):
    city = token_for(settings, "city")
    first = await alerts.get("/v1/alerts", headers=city, params={"limit": 2})
    seen = [a["id"] for a in first.json()["items"]]
    cursor = first.json()["next_cursor"]
    while cursor:
        page = (await alerts.get("/v1/alerts", headers=city, params={"limit": 2, "cursor": cursor})).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
    everything = (await alerts.get("/v1/alerts", headers=city, params={"limit": 500})).json()["items"]
    assert seen == [a["id"] for a in everything] and len(seen) == len(set(seen))
    tampered = await alerts.get("/v1/alerts", headers=city, params={"cursor": "garbage"})
    assert tampered.status_code == 422 and tampered.json()["field"] == "cursor"


async def test_republished_snapshots_are_applied_by_version_without_going_backwards(
        registry, alerts, settings, bootstrap):
    # A real resident's own snapshot, re-sent with higher versions: the residents topic is shared by the
    # suite, and reporting folds it too, so what is sent must agree with the registry.
    runtime = alerts.app.state.runtime
    rid = await register(registry, settings, living="alone", birth_year=1941)  # 80+ and alone: high risk
    await projected(alerts, rid)
    records = await read_topic(bootstrap, "eldercare.registry.residents.v1", idle=1.0)
    [registered] = [e for r, e in json_records(records) if r.key == rid.encode()
                    and e["type"] == "eldercare.resident.registered.v1"]

    def snapshot(version: int, living: str) -> bytes:
        resident = {**registered["data"]["resident"], "living_arrangement": living, "version": version}
        return orjson.dumps({
            "specversion": "1.0", "id": str(uuid.uuid4()), "source": "registry", "type": "eldercare.resident.snapshot.v1",
            "subject": rid, "countycode": "410928", "data": {"resident": resident, "job_id": "j1"}})

    await produce(bootstrap, "eldercare.registry.residents.v1", [snapshot(3, "alone"), snapshot(2, "with_family")],
                  key=rid.encode())

    async def applied():
        async with runtime.db.connection() as conn:
            return await conn.fetchrow("SELECT version, living_arrangement, visit_group FROM residents "
                                       "WHERE resident_id = $1", uuid.UUID(rid))

    row = await wait_for(applied, 60)
    await asyncio.sleep(1.0)
    row = await applied()
    assert (row["version"], row["living_arrangement"], row["visit_group"]) == (3, "alone", "high_risk")


async def test_one_batch_writes_one_step_per_alert_however_many_repeats_join_it(registry, alerts, settings):
    """Detection folds a batch's repeats: a resident's readings beyond the limit open one alert with
    their count and write `raised` and one `updated` step; the next batch's repeats one more step; a
    wearer's cancel before any SOS is open notes nothing, one after it is noted on the SOS."""
    from services.alerts import handlers
    from services.alerts.parsing import envelope_parser

    parse = envelope_parser(handlers.INGEST_TYPES)
    runtime = alerts.app.state.runtime
    rid = await register(registry, settings, living="with_family")
    await projected(alerts, rid)
    base = datetime.now(timezone.utc) - timedelta(minutes=1)

    def vitals(start: int, values: list[int]):
        return [parse(orjson.dumps(cloud_event(VITALS, {"device_id": "B-7", "heart_rate": hr}, rid,
                                               time=(base + timedelta(seconds=start + i)).isoformat())))
                for i, hr in enumerate(values)]

    def alarm(code: str):
        return parse(orjson.dumps(cloud_event(ALARM, {"device_id": "W-7", "code": code}, rid)))

    async def timeline(cause: str) -> tuple[dict, list]:
        async with runtime.db.connection() as conn:
            alert = await conn.fetchrow("SELECT id, count, details FROM alerts WHERE resident_id = $1 AND cause = $2",
                                        uuid.UUID(rid), cause)
            steps = await conn.fetch("SELECT kind, data FROM alert_steps WHERE alert_id = $1 ORDER BY seq", alert["id"])
        return dict(alert), [(s["kind"], s["data"].get("count")) for s in steps]

    # 140 raises, 141 repeats, 110 clears the state, 142 raises again: the same open alert, count 3.
    async with runtime.db.transaction() as conn:
        out = await handlers.apply_ingest(conn, [alarm("SOS_CANCEL"), *vitals(0, [140, 141, 110, 142]),
                                                 alarm("SOS"), alarm("SOS_CANCEL")])
    assert (out["raised"], out["joined"]) == (2, 3)
    alert, steps = await timeline("heart_rate_high")
    assert alert["count"] == 3 and steps == [("raised", None), ("updated", 3)]
    sos, sos_steps = await timeline("sos")
    assert sos["count"] == 2 and sos["details"]["note"] == "cancelled by the wearer"
    assert sos_steps == [("raised", None), ("updated", 2)]
    async with runtime.db.transaction() as conn:
        out = await handlers.apply_ingest(conn, vitals(10, [150, 151]))
    assert (out["raised"], out["joined"]) == (0, 2)
    alert, steps = await timeline("heart_rate_high")
    assert alert["count"] == 5 and steps == [("raised", None), ("updated", 3), ("updated", 5)]
