"""Emergency contacts against the real services: kept by alerts with phone numbers masked everywhere
unless revealed with a reason (audited, append-only), and notified on an alert's escalation path
through a real HTTP gateway: every attempt on the timeline, retried, the next contact tried when one
cannot be reached, failures visible."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import orjson
import pytest

from services.alerts.domain.webhooks import verify
from services.alerts.scheduler import Scheduler
from services.alerts.settings import AlertsSettings
from tests.conftest import token_for
from tests.integration.alerts.support import SOS, cloud_event, post, projected, register, wait_alert, wait_for
from tests.integration.alerts.test_delivery import serve

PUYANG = "410928"
# A county of its own: its rules escalate after 2 s (other tests' overrides stay on theirs).
NANLE = "410923"
FIRST, SECOND = "13900001111", "13700002222"


@contextlib.asynccontextmanager
async def scheduler_with(alerts, settings: AlertsSettings):
    """The leader replaced by one with these settings (as after a restart with other ALERTS_*), and
    put back afterwards."""
    runtime = alerts.app.state.runtime

    async def swap(new: Scheduler) -> None:
        old = next(t for t in runtime.tasks if t.get_name() == "alerts-scheduler")
        old.cancel()
        await asyncio.gather(old, return_exceptions=True)
        runtime.tasks.remove(old)
        runtime.tasks.append(asyncio.create_task(new.run(), name="alerts-scheduler"))

    await swap(Scheduler(runtime.db, care_every_s=3600, settings=settings))
    try:
        yield
    finally:
        await swap(Scheduler(runtime.db, care_every_s=3600))


async def test_contacts_are_masked_unless_revealed_with_a_reason_and_every_reveal_is_audited(
        registry, alerts, settings):
    puyang, other = token_for(settings, "county", PUYANG), token_for(settings, "county", "410922")
    city = token_for(settings, "city", subject="duty-lead-zhang")
    rid = await register(registry, settings)
    await projected(alerts, rid)
    url = f"/v1/residents/{rid}/contacts"
    body = {"contacts": [{"name": "王建国", "relation": "儿子", "phone": "139-0000-1111"},
                         {"name": "刘芳", "relation": "邻居", "phone": SECOND}]}
    saved = await alerts.put(url, headers=puyang, json=body)
    assert saved.status_code == 200, saved.text
    assert [c["phone"] for c in saved.json()["contacts"]] == ["139****1111", "137****2222"]
    assert (await alerts.put(url, headers=other, json=body)).status_code == 404
    assert (await alerts.get(url, headers=other)).status_code == 404
    assert (await alerts.get(url, headers=token_for(settings, "viewer"))).status_code == 403
    bad = await alerts.put(url, headers=puyang, json={"contacts": [{"name": "王建国", "phone": "call me"}]})
    assert bad.status_code == 422 and bad.json()["field"].startswith("contacts")
    missing = await alerts.get(url, headers=puyang, params={"reveal": "true"})
    assert missing.status_code == 400 and missing.json()["field"] == "reason"
    weak = await alerts.get(url, headers=puyang, params={"reveal": "true", "reason": "查看"})
    assert weak.status_code == 422 and weak.json()["field"] == "reason"
    masked = (await alerts.get(url, headers=puyang)).json()
    assert masked["revealed"] is False and FIRST not in orjson.dumps(masked).decode()
    shown = await alerts.get(url, headers=city, params={"reveal": "true", "reason": "老人跌倒，联系家属"})
    assert shown.status_code == 200 and [c["phone"] for c in shown.json()["contacts"]] == [FIRST, SECOND]
    assert (await alerts.get("/v1/audit", headers=puyang)).status_code == 403
    audit = (await alerts.get("/v1/audit", headers=city, params={"resident_id": rid})).json()["items"]
    assert [(a["actor"], a["action"], a["reason"], a["fields"]) for a in audit] == [
        ("duty-lead-zhang", "read_unmasked", "老人跌倒，联系家属", ["contacts.phone"])]
    # The audit log takes no change, not even from the service's own role.
    runtime = alerts.app.state.runtime
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with runtime.db.transaction() as conn:
            await conn.execute("DELETE FROM audit_log WHERE resident_id = $1", uuid.UUID(rid))
    # An alert shows the first contact to the operator, the number masked, never in clear.
    await post(registry, settings, [cloud_event(SOS, {"device_id": "C-1"}, rid)])
    alert = await wait_alert(alerts, puyang, rid, "sos")
    assert alert["resident"]["emergency_contact"] == "王建国（儿子） 139****1111"
    listing = await alerts.get("/v1/alerts", headers=puyang, params={"resident_id": rid})
    one = await alerts.get(f"/v1/alerts/{alert['id']}", headers=puyang)
    for text in (listing.text, one.text):
        assert FIRST not in text and SECOND not in text


async def test_escalation_calls_the_contacts_in_order_retrying_and_falling_back_with_every_attempt_on_the_timeline(
        registry, alerts, settings):
    from eldercare.infra import free_port

    nanle, city = token_for(settings, "county", NANLE), token_for(settings, "city")
    saved = await alerts.put(f"/v1/rules/counties/{NANLE}", headers=city, json={"rules": {"escalate_after_s": 2}})
    assert saved.status_code == 200, saved.text
    secret = "whsec_" + "c2VjcmV0LWZvci10aGUtc21zLWdhdGV3YXk="
    sms: list[dict] = []

    async def gateway(scope, receive, send):
        # The first contact's phone is off: the gateway refuses; the second answers.
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        payload = orjson.loads(body)
        sms.append({**payload, "verified": verify(secret, headers["webhook-id"], int(headers["webhook-timestamp"]),
                                                  body, headers["webhook-signature"])})
        status = 503 if payload["to"] == FIRST else 202
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    server, task = await serve(gateway, port)
    try:
        async with scheduler_with(alerts, AlertsSettings(
                _env_file=None, notify_url=f"http://127.0.0.1:{port}/sms", notify_secret=secret,
                notify_max_attempts=2, notify_first_retry_s=0.3)):
            rid = await register(registry, settings, county=NANLE, name="赵玉梅")
            await projected(alerts, rid)
            put = await alerts.put(f"/v1/residents/{rid}/contacts", headers=nanle, json={"contacts": [
                {"name": "赵军", "relation": "儿子", "phone": FIRST}, {"name": "孙丽", "relation": "女儿", "phone": SECOND}]})
            assert put.status_code == 200
            await post(registry, settings, [cloud_event(SOS, {"device_id": "N-1"}, rid, county=NANLE)], county=NANLE)
            alert = await wait_alert(alerts, nanle, rid, "sos")

            async def notified():
                view = (await alerts.get(f"/v1/alerts/{alert['id']}", headers=nanle)).json()
                steps = [s for s in view["timeline"] if s["kind"] == "notified"]
                return view if any(s["data"]["outcome"] == "sent" for s in steps) else None

            view = await wait_for(notified, 30)
            kinds = [s["kind"] for s in view["timeline"]]
            assert kinds.index("escalated") < kinds.index("notified") and view["level"] == "city"
            steps = [(s["data"]["contact"], s["data"]["attempt"], s["data"]["outcome"], s["data"]["trigger"])
                     for s in view["timeline"] if s["kind"] == "notified"]
            assert steps == [("赵军 139****1111", 1, "retrying", "escalated"),
                             ("赵军 139****1111", 2, "failed", "escalated"),
                             ("孙丽 137****2222", 1, "sent", "escalated")]
            failed = next(s for s in view["timeline"] if s["kind"] == "notified" and s["data"]["outcome"] == "failed")
            assert failed["data"]["error"] == "gateway answered HTTP 503"
            assert FIRST not in orjson.dumps(view).decode()
            calls = (await alerts.get(f"/v1/alerts/{alert['id']}/notifications", headers=nanle)).json()["items"]
            assert [(c["position"], c["phone"], c["status"], c["attempts"], c["last_error"]) for c in calls] == [
                (1, "139****1111", "failed", 2, "gateway answered HTTP 503"), (2, "137****2222", "sent", 1, None)]
            assert [c["next_attempt_at"] for c in calls] == [None, None]
            assert (await alerts.get(f"/v1/alerts/{alert['id']}/notifications",
                                     headers=token_for(settings, "county", PUYANG))).status_code == 404
            # The gateway got the numbers (it must dial them), signed, with the message in Chinese.
            assert [m["to"] for m in sms] == [FIRST, FIRST, SECOND] and all(m["verified"] for m in sms)
            assert "赵玉梅" in sms[-1]["text"] and "紧急呼叫" in sms[-1]["text"]
            # An operator dispatching the emergency contact of a resident with none on file sees that.
            lonely = await register(registry, settings, county=NANLE)
            await projected(alerts, lonely)
            await post(registry, settings, [cloud_event(SOS, {"device_id": "N-2"}, lonely, county=NANLE)],
                       county=NANLE)
            other = await wait_alert(alerts, nanle, lonely, "sos")
            sent = await alerts.post(f"/v1/alerts/{other['id']}/dispatch", headers=nanle,
                                     json={"targets": ["emergency_contact"]})
            assert sent.status_code == 200
            none = [s["data"] for s in sent.json()["timeline"] if s["kind"] == "notified"
                    and s["data"]["trigger"] == "dispatch"]
            assert [(n["outcome"], n["error"]) for n in none] == [("no_contact", "no emergency contact on file")]
    finally:
        server.should_exit = True
        await task
