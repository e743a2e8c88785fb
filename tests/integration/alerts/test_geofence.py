"""Geofences against the real services: position fixes posted to the registry's gateway are checked
against the resident's safe zone (set through the API, or around the home the registry's events
carry for a resident with dementia); GPS jitter at the edge raises nothing, leaving raises once,
coming back resolves it."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone

import orjson

from tests.conftest import token_for
from tests.integration.alerts.support import alerts_of, cloud_event, post, projected, register, wait_alert, wait_for
from tests.integration.alerts.test_detection import produce
from tests.integration.support import json_records, read_topic

LOCATION = "eldercare.county.device.location.v1"
PUYANG = "410928"
CENTRE = (35.7620, 115.0290)
DEGREE_M = 6_371_008.8 * math.pi / 180


def north(metres: float) -> tuple[float, float]:
    return CENTRE[0] + metres / DEGREE_M, CENTRE[1]


class Fixes:
    """Position fixes of one device, a second apart (readings are ordered by their time)."""

    def __init__(self, rid: str, device: str = "GPS-1") -> None:
        self.rid, self.device = rid, device
        self.t = datetime.now(timezone.utc) - timedelta(minutes=5)

    def __call__(self, metres: list[float], accuracy: float | None = 10) -> list[dict]:
        out = []
        for d in metres:
            self.t += timedelta(seconds=1)
            lat, lon = north(d)
            data = {"device_id": self.device, "lat": lat, "lon": lon}
            if accuracy is not None:
                data["accuracy_m"] = accuracy
            out.append(cloud_event(LOCATION, data, self.rid, time=self.t.isoformat()))
        return out


async def fixes_applied(alerts, headers, rid: str, fixes: Fixes) -> dict:
    """Wait until the zone state has seen the latest fix."""
    async def check():
        view = (await alerts.get(f"/v1/residents/{rid}/geofence", headers=headers)).json()
        state = view.get("state") or {}
        seen = state.get("last_fix_at")
        return view if seen and datetime.fromisoformat(seen) >= fixes.t else None

    return await wait_for(check, 60)


async def test_a_configured_zone_ignores_jitter_raises_once_on_leaving_and_resolves_on_return(
        registry, alerts, settings):
    puyang = token_for(settings, "county", PUYANG)
    started = datetime.now(timezone.utc)
    rid = await register(registry, settings, categories=["dementia"], name="陈淑芬")
    await projected(alerts, rid)
    url = f"/v1/residents/{rid}/geofence"
    before = (await alerts.get(url, headers=puyang)).json()
    assert before["configured"] is None and before["effective"] is None and before["home_known"] is False
    bad = await alerts.put(url, headers=puyang, json={"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 10})
    assert bad.status_code == 422 and bad.json()["field"] == "radius_m"
    other = token_for(settings, "county", "410922")
    assert (await alerts.put(url, headers=other, json={"lat": 35.0, "lon": 115.0, "radius_m": 300})).status_code == 404
    assert (await alerts.get(url, headers=token_for(settings, "viewer"))).status_code == 403
    saved = await alerts.put(url, headers=puyang, json={"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 300,
                                                        "note": "家周边"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["effective"]["source"] == "configured" and saved.json()["effective"]["radius_m"] == 300
    fixes = Fixes(rid)
    # Hovering at the edge (inside and just outside the 300 m radius, within the 50 m band): nothing.
    await post(registry, settings, fixes([250, 330, 345, 290, 340, 310, 349, 280, 335, 300]))
    view = await fixes_applied(alerts, puyang, rid, fixes)
    assert view["state"]["state"] == "inside"
    # A vague fix far away is ignored; one confident fix outside is not enough.
    await post(registry, settings, fixes([2000], accuracy=900) + fixes([700]) + fixes([200]))
    await fixes_applied(alerts, puyang, rid, fixes)
    assert await alerts_of(alerts, puyang, resident_id=rid, cause="geofence_exit") == []
    # Two fixes in a row well outside: the resident has left.
    await post(registry, settings, fixes([650, 800]))
    alert = await wait_alert(alerts, puyang, rid, "geofence_exit")
    assert alert["severity"] == "critical" and alert["status"] == "open" and alert["escalate_at"] is not None
    assert alert["details"]["zone"] == "configured" and 790 <= alert["details"]["distance_m"] <= 810
    assert alert["resident"]["name"] == "陈淑芬"
    # Still away, wandering about: the same alert, not one per fix.
    await post(registry, settings, fixes([900, 1200, 1100, 280]))
    await fixes_applied(alerts, puyang, rid, fixes)
    items = await alerts_of(alerts, puyang, resident_id=rid, cause="geofence_exit")
    assert [(a["id"], a["count"], a["status"]) for a in items] == [(alert["id"], 1, "open")]
    # Back home (two fixes well inside): resolved by the system, with the reason.
    await post(registry, settings, fixes([120, 60]))

    async def resolved():
        a = (await alerts.get(f"/v1/alerts/{alert['id']}", headers=puyang)).json()
        return a if a["status"] == "resolved" else None

    done = await wait_for(resolved, 60)
    assert done["resolution"] == "returned_to_zone" and done["resolved_by"] == "system"
    assert [s["kind"] for s in done["timeline"]] == ["raised", "acknowledged", "resolved"]
    # Leaving again is a new excursion: a new alert.
    await post(registry, settings, fixes([900, 950]))

    async def second():
        items = await alerts_of(alerts, puyang, resident_id=rid, cause="geofence_exit")
        return items if len(items) == 2 else None

    items = await wait_for(second, 60)
    assert items[0]["id"] != alert["id"] and items[0]["status"] == "open"
    # The KPIs measure operators: the alert the system closed is not counted as answered (nor at all).
    kpis = (await alerts.get("/v1/kpis", headers=puyang, params={
        "since": started.isoformat(), "severity": "critical"})).json()
    mine = await alerts_of(alerts, puyang, since=started.isoformat(), severity="critical")
    assert kpis["scope"]["alerts"] == len(mine) - 1 and kpis["scope"]["acknowledged"] == sum(
        1 for a in mine if a["acknowledged_by"] not in (None, "system"))
    # Removing the zone: a resident whose home is unknown has none left.
    removed = await alerts.delete(url, headers=puyang)
    assert removed.status_code == 200 and removed.json()["effective"] is None
    assert (await alerts.delete(url, headers=puyang)).status_code == 404


async def test_a_dementia_residents_home_from_the_registrys_events_is_their_zone(registry, alerts, settings, bootstrap):
    # The registry does not send home locations yet; this is the resident's own registered snapshot,
    # re-sent with a newer version carrying the home, as the registry will once it knows it.
    puyang = token_for(settings, "county", PUYANG)
    runtime = alerts.app.state.runtime
    rid = await register(registry, settings, categories=["dementia"], living="with_family")
    plain = await register(registry, settings, living="with_family")
    await projected(alerts, rid)
    await projected(alerts, plain)
    records = await read_topic(bootstrap, "eldercare.registry.residents.v1", idle=1.0)

    def with_home(resident_id: str) -> bytes:
        [registered] = [e for r, e in json_records(records) if r.key == resident_id.encode()
                        and e["type"] == "eldercare.resident.registered.v1"]
        resident = {**registered["data"]["resident"], "home_lat": CENTRE[0], "home_lon": CENTRE[1], "version": 2}
        return orjson.dumps({
            "specversion": "1.0", "id": str(uuid.uuid4()), "source": "registry",
            "type": "eldercare.resident.snapshot.v1", "subject": resident_id, "countycode": PUYANG,
            "data": {"resident": resident, "job_id": "home-locations"}})

    for resident_id in (rid, plain):
        await produce(bootstrap, "eldercare.registry.residents.v1", [with_home(resident_id)], key=resident_id.encode())

    async def homed():
        async with runtime.db.connection() as conn:
            return await conn.fetchval("SELECT count(*) = 2 FROM residents WHERE resident_id = ANY($1::uuid[]) "
                                       "AND home_lat IS NOT NULL", [uuid.UUID(rid), uuid.UUID(plain)])

    await wait_for(homed, 60)
    view = (await alerts.get(f"/v1/residents/{rid}/geofence", headers=puyang)).json()
    assert view["home_known"] and view["effective"]["source"] == "home" and view["effective"]["radius_m"] == 300
    assert (await alerts.get(f"/v1/residents/{plain}/geofence", headers=puyang)).json()["effective"] is None
    away, elsewhere = Fixes(rid, "W-7"), Fixes(plain, "W-8")
    await post(registry, settings, away([100, 1500, 1600]) + elsewhere([1500, 1600, 1700]))
    alert = await wait_alert(alerts, puyang, rid, "geofence_exit")
    assert alert["details"]["zone"] == "home" and alert["rule_version"].startswith("city:")
    await fixes_applied(alerts, puyang, rid, away)

    async def read_through():
        async with runtime.db.connection() as conn:
            return await conn.fetchval("SELECT last_at >= $2 FROM signals WHERE resident_id = $1",
                                       uuid.UUID(plain), elsewhere.t)

    await wait_for(read_through, 60)
    # Someone without dementia walking about raises nothing (and has no zone state written).
    assert await alerts_of(alerts, puyang, resident_id=plain) == []
    async with runtime.db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM geofence_states WHERE resident_id = $1",
                                   uuid.UUID(plain)) == 0
