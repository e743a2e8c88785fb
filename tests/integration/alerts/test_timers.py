"""Rules as data, persisted timers (escalation, no activity, overdue visits) and silences."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from services.alerts import handlers
from services.alerts.scheduler import Scheduler
from tests.conftest import token_for
from tests.integration.alerts.support import (
    ACTIVITY, SOS, alerts_of, cloud_event, post, projected, register, wait_alert, wait_for,
)

QINGFENG = "410922"


async def test_rules_are_city_edited_versioned_and_a_county_override_is_named_by_the_alert(
        registry, alerts, settings):
    city, county = token_for(settings, "city"), token_for(settings, "county", "410928")
    before = (await alerts.get("/v1/rules", headers=county)).json()
    assert before["city"]["version"] >= 1 and before["city"]["rules"]["escalate_after_s"] == 60
    refused = await alerts.put("/v1/rules", headers=county, json={"rules": before["city"]["rules"]})
    assert refused.status_code == 403
    bad = await alerts.put("/v1/rules", headers=city, json={"rules": {"vitals": {"glucose": {"high": 9}}}})
    assert bad.status_code == 422 and bad.json()["field"].startswith("rules")
    stale = await alerts.put("/v1/rules/counties/410928", headers=city,
                             json={"rules": {"incident_window_s": 200}, "base_version": 99})
    assert stale.status_code == 409 and stale.json()["field"] == "base_version"
    saved = await alerts.put("/v1/rules/counties/410928", headers=city,
                             json={"rules": {"vitals": {"spo2": {"low": 88}}}, "note": "高原地区"})
    assert saved.status_code == 200, saved.text
    version = saved.json()["version"]
    view = (await alerts.get("/v1/rules", headers=city, params={"county_code": "410928"})).json()
    assert view["effective"]["rules"]["vitals"]["spo2"]["low"] == 88
    assert view["effective"]["version"].endswith(f"+410928:{version}")
    rid = await register(registry, settings, living="with_family")
    await projected(alerts, rid)
    await post(registry, settings, [cloud_event("eldercare.county.device.vitals.v1", {"device_id": "B", "spo2": 87},
                                                rid)])
    alert = await wait_alert(alerts, county, rid, "spo2_low")
    assert alert["rule_version"] == view["effective"]["version"] and alert["details"]["limit"] == 88
    unknown = await alerts.put("/v1/rules/counties/999999", headers=city, json={"rules": {}})
    assert unknown.status_code == 422 and unknown.json()["field"] == "code"


def _scheduler_task(alerts):
    runtime = alerts.app.state.runtime
    return runtime, next(t for t in runtime.tasks if t.get_name() == "alerts-scheduler")


async def test_unacknowledged_critical_escalates_to_the_city_once_even_across_a_scheduler_restart(
        registry, alerts, settings):
    city, qingfeng = token_for(settings, "city"), token_for(settings, "county", QINGFENG)
    saved = await alerts.put(f"/v1/rules/counties/{QINGFENG}", headers=city, json={"rules": {"escalate_after_s": 2}})
    assert saved.status_code == 200
    runtime, task = _scheduler_task(alerts)
    # The leader goes away (a crash: its lock connection closes) before the timer is due.
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    runtime.tasks.remove(task)
    rid = await register(registry, settings, county=QINGFENG)
    await projected(alerts, rid)
    await post(registry, settings, [cloud_event(SOS, {"device_id": "S"}, rid, county=QINGFENG)], county=QINGFENG)
    alert = await wait_alert(alerts, qingfeng, rid, "sos")
    assert alert["level"] == "county"
    await asyncio.sleep(2.5)
    assert (await alerts.get(f"/v1/alerts/{alert['id']}", headers=qingfeng)).json()["level"] == "county"
    # A new leader (another process, after the restart) finds the due timer in the table.
    successor = Scheduler(runtime.db, care_every_s=3600)
    runtime.tasks.append(asyncio.create_task(successor.run(), name="alerts-scheduler"))

    async def escalated():
        a = (await alerts.get(f"/v1/alerts/{alert['id']}", headers=qingfeng)).json()
        return a if a["level"] == "city" else None

    done = await wait_for(escalated, 20)
    assert done["escalated_at"] is not None and done["escalate_at"] is None
    async with runtime.db.transaction() as conn:
        assert await handlers.escalate_due(conn) == 0
    await asyncio.sleep(1.0)
    kinds = [s["kind"] for s in done["timeline"]]
    again = (await alerts.get(f"/v1/alerts/{alert['id']}", headers=qingfeng)).json()
    # Escalating calls the emergency contacts (none on file here: the timeline says so), once too.
    assert [s["kind"] for s in again["timeline"]] == kinds == ["raised", "escalated", "notified"]
    assert again["timeline"][2]["data"]["outcome"] == "no_contact"
    kpis = (await alerts.get("/v1/kpis", headers=city)).json()
    assert kpis["counties"][QINGFENG]["escalations"] >= 1 and kpis["city"]["escalations"] >= 1
    # Acknowledged in time: no escalation.
    await post(registry, settings, [cloud_event("eldercare.county.device.fall.v1", {"device_id": "S"}, rid,
                                                county=QINGFENG)], county=QINGFENG)
    fall = await wait_alert(alerts, qingfeng, rid, "fall")
    assert (await alerts.post(f"/v1/alerts/{fall['id']}/ack", headers=qingfeng)).status_code == 200
    await asyncio.sleep(3)
    assert (await alerts.get(f"/v1/alerts/{fall['id']}", headers=qingfeng)).json()["level"] == "county"
    await alerts.put(f"/v1/rules/counties/{QINGFENG}", headers=city, json={"rules": {"escalate_after_s": 60}})


async def test_silenced_alerts_are_recorded_without_escalation_and_silences_need_an_expiry(
        registry, alerts, settings):
    puyang = token_for(settings, "county", "410928")
    rid = await register(registry, settings)
    await projected(alerts, rid)
    expires = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
    missing = await alerts.post("/v1/silences", headers=puyang, json={
        "county_code": "410928", "resident_id": rid, "owner": "张值班", "reason": "设备维修"})
    assert missing.status_code == 422 and missing.json()["field"] == "expires_at"
    too_long = await alerts.post("/v1/silences", headers=puyang, json={
        "county_code": "410928", "resident_id": rid, "owner": "张值班", "reason": "设备维修",
        "expires_at": (datetime.now(timezone.utc) + timedelta(days=60)).isoformat()})
    assert too_long.status_code == 422
    other = await alerts.post("/v1/silences", headers=puyang, json={
        "county_code": QINGFENG, "cause": "sos", "owner": "x", "reason": "y", "expires_at": expires})
    assert other.status_code == 403
    made = await alerts.post("/v1/silences", headers=puyang, json={
        "county_code": "410928", "resident_id": rid, "cause": "sos", "owner": "张值班", "reason": "设备测试",
        "expires_at": expires})
    assert made.status_code == 201, made.text
    await post(registry, settings, [cloud_event(SOS, {"device_id": "T"}, rid)])
    alert = await wait_alert(alerts, puyang, rid, "sos")
    assert alert["silenced"] and alert["silence_id"] == made.json()["id"] and alert["escalate_at"] is None
    loud = await alerts_of(alerts, puyang, resident_id=rid, include_silenced="false")
    assert loud == []
    revoked = await alerts.delete(f"/v1/silences/{made.json()['id']}", headers=puyang)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    active = (await alerts.get("/v1/silences", headers=puyang)).json()["items"]
    assert made.json()["id"] not in [s["id"] for s in active]


async def test_projection_follows_the_registry_and_overdue_visits_warn_once_until_a_visit(
        registry, alerts, settings):
    puyang = token_for(settings, "county", "410928")
    rid = await register(registry, settings, living="with_family", categories=["dementia"])
    await projected(alerts, rid)
    runtime = alerts.app.state.runtime
    async with runtime.db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM residents WHERE resident_id = $1", uuid.UUID(rid))
        assert row["visit_group"] == "key_group" and row["categories"] == ["dementia"]
        assert abs((row["visit_due_at"] - row["care_since"]) - timedelta(days=30)) < timedelta(seconds=1)
        await conn.execute("UPDATE residents SET visit_due_at = now() - interval '1 hour' WHERE resident_id = $1",
                           uuid.UUID(rid))
    async with runtime.db.transaction() as conn:
        assert await handlers.visits_due(conn) >= 1
    async with runtime.db.transaction() as conn:
        await handlers.visits_due(conn)
    alert = await wait_alert(alerts, puyang, rid, "visit_overdue")
    assert alert["count"] == 1 and alert["severity"] == "warning"
    kpis = (await alerts.get("/v1/kpis", headers=puyang)).json()
    assert kpis["counties"]["410928"]["visit_coverage"]["owed"] >= 1
    at = datetime.now(timezone.utc).isoformat()
    await post(registry, settings, [cloud_event("eldercare.county.visit.logged.v1",
                                                {"visitor": "村医李", "kind": "home", "at": at}, rid)])

    async def closed():
        a = (await alerts.get(f"/v1/alerts/{alert['id']}", headers=puyang)).json()
        return a if a["status"] == "resolved" else None

    done = await wait_for(closed, 60)
    assert done["resolution"] == "visited"
    # The resident moves in with family; a death ends the visit clock.
    patched = await registry.get(f"/v1/residents/{rid}", headers=puyang)
    response = await registry.post(f"/v1/residents/{rid}/death", headers=puyang, json={"date_of_death": "2026-12-01"})
    assert response.status_code in (200, 201), response.text
    assert patched.status_code == 200

    async def dead():
        async with runtime.db.connection() as conn:
            return await conn.fetchval("SELECT status = 'deceased' AND visit_due_at IS NULL FROM residents "
                                       "WHERE resident_id = $1", uuid.UUID(rid))

    await wait_for(dead, 60)


async def test_solitary_elder_whose_devices_go_quiet_gets_one_no_activity_warning(registry, alerts, settings):
    puyang = token_for(settings, "county", "410928")
    rid = await register(registry, settings, living="alone")
    family = await register(registry, settings, living="with_family")
    await projected(alerts, rid)
    await projected(alerts, family)
    await post(registry, settings, [cloud_event(ACTIVITY, {"device_id": "M", "kind": "motion"}, rid),
                                    cloud_event(ACTIVITY, {"device_id": "N", "kind": "motion"}, family)])
    runtime = alerts.app.state.runtime

    async def heard():
        async with runtime.db.connection() as conn:
            return await conn.fetchval("SELECT count(*) FROM signals WHERE resident_id = ANY($1::uuid[])",
                                       [uuid.UUID(rid), uuid.UUID(family)]) == 2

    await wait_for(heard, 60)
    async with runtime.db.transaction() as conn:
        await conn.execute("UPDATE signals SET last_at = last_at - interval '13 hours' "
                           "WHERE resident_id = ANY($1::uuid[])", [uuid.UUID(rid), uuid.UUID(family)])
    async with runtime.db.transaction() as conn:
        await handlers.no_activity_due(conn)
    async with runtime.db.transaction() as conn:
        await handlers.no_activity_due(conn)
    alert = await wait_alert(alerts, puyang, rid, "no_activity")
    assert alert["count"] == 1
    assert await alerts_of(alerts, puyang, resident_id=family, cause="no_activity") == []
