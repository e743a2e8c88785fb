"""Pruning the alert history: resolved alerts older than the retention go with their timeline and
notification attempts; open ones and recent ones stay; the audit log is never touched."""

from __future__ import annotations

import uuid

from services.alerts.history import prune_history
from services.alerts.settings import AlertsSettings
from tests.conftest import token_for
from tests.integration.alerts.support import SOS, cloud_event, post, projected, register, wait_alert


async def test_old_resolved_alerts_are_pruned_with_their_steps_and_open_ones_and_the_audit_log_stay(
        registry, alerts, settings):
    puyang, city = token_for(settings, "county", "410928"), token_for(settings, "city")
    runtime = alerts.app.state.runtime
    rids = [await register(registry, settings) for _ in range(3)]
    for rid in rids:
        await projected(alerts, rid)
    await alerts.put(f"/v1/residents/{rids[0]}/contacts", headers=puyang,
                     json={"contacts": [{"name": "王建国", "phone": "13800005678"}]})
    shown = await alerts.get(f"/v1/residents/{rids[0]}/contacts", headers=city,
                             params={"reveal": "true", "reason": "核对家属电话"})
    assert shown.status_code == 200
    await post(registry, settings, [cloud_event(SOS, {"device_id": f"H-{n}"}, rid) for n, rid in enumerate(rids)])
    old, recent, still_open = [await wait_alert(alerts, puyang, rid, "sos") for rid in rids]
    for a in (old, recent):
        done = await alerts.post(f"/v1/alerts/{a['id']}/resolve", headers=puyang, json={"resolution": "false_alarm"})
        assert done.status_code == 200
    await alerts.post(f"/v1/alerts/{old['id']}/dispatch", headers=puyang, json={"targets": ["doctor"]})
    ids = [uuid.UUID(a["id"]) for a in (old, recent, still_open)]
    async with runtime.db.transaction() as conn:
        await conn.execute("INSERT INTO notifications (alert_id, county_code, resident_id, position, name, phone, "
                           "trigger, status) VALUES ($1, '410928', $2, 1, '王建国', '13800005678', 'dispatch', 'sent')",
                           ids[0], uuid.UUID(rids[0]))
        # 401 days ago for the first; the open one is as old, but open alerts are never pruned.
        await conn.execute("UPDATE alerts SET resolved_at = now() - interval '401 days', "
                           "raised_at = now() - interval '401 days' WHERE id = $1", ids[0])
        await conn.execute("UPDATE alerts SET raised_at = now() - interval '500 days' WHERE id = $1", ids[2])
        # Orders the alerts service watched: ended ones go after their retention, live ones stay.
        tag = uuid.uuid4().hex[:8]
        await conn.execute(
            "INSERT INTO orders (order_id, county_code, state, scheduled_start) VALUES "
            "($1, '410928', 'completed', now() - interval '40 days'), ($2, '410928', 'placed', now() - interval '40 days'), "
            "($3, '410928', 'completed', now() - interval '2 days')", f"old-{tag}", f"open-{tag}", f"new-{tag}")
        audit_before = await conn.fetchval("SELECT count(*) FROM audit_log")
        steps_before = await conn.fetchval("SELECT count(*) FROM alert_steps WHERE alert_id = $1", ids[0])
    assert steps_before >= 3 and audit_before >= 1
    deleted = await prune_history(runtime.db, AlertsSettings(_env_file=None, history_retention_days=400))
    assert deleted["alerts"] >= 1
    async with runtime.db.connection() as conn:
        left = {r["id"] for r in await conn.fetch("SELECT id FROM alerts WHERE id = ANY($1::uuid[])", ids)}
        assert left == {ids[1], ids[2]}
        assert await conn.fetchval("SELECT count(*) FROM alert_steps WHERE alert_id = $1", ids[0]) == 0
        assert await conn.fetchval("SELECT count(*) FROM notifications WHERE alert_id = $1", ids[0]) == 0
        assert await conn.fetchval("SELECT count(*) FROM alert_steps WHERE alert_id = $1", ids[1]) >= 2
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == audit_before
        kept = {r["order_id"] for r in await conn.fetch("SELECT order_id FROM orders WHERE order_id LIKE $1",
                                                        f"%-{tag}")}
        assert kept == {f"open-{tag}", f"new-{tag}"}
    assert (await alerts.get(f"/v1/alerts/{old['id']}", headers=puyang)).status_code == 404
    assert (await alerts.get(f"/v1/alerts/{recent['id']}", headers=puyang)).status_code == 200
    # A second round finds nothing more to do.
    again = await prune_history(runtime.db, AlertsSettings(_env_file=None, history_retention_days=400))
    assert again["alerts"] == 0
