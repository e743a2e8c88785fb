"""Delivery to people and systems: the SSE stream in the caller's scope (resumable), and signed
webhooks with retries, visible failures and dead letters; a slow receiver never delays detection."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import orjson
import pytest

from services.alerts.domain.webhooks import verify
from tests.conftest import token_for
from tests.integration.alerts.support import SOS, cloud_event, post, projected, register, wait_alert, wait_for


async def serve(app, port: int):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    return server, task


@pytest.fixture(scope="session")
async def alerts_url(alerts):
    """The alerts app behind a real HTTP server (httpx's ASGI transport cannot stream)."""
    from eldercare.infra import free_port

    port = free_port()
    server, task = await serve(alerts.app, port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


_LINES: dict[int, object] = {}


async def read_sse(response, until, timeout: float = 30.0) -> list[dict]:
    """Frames until `until(frames)` holds (one line iterator per response, kept between calls)."""
    frames: list[dict] = []
    current: dict = {}
    deadline = time.monotonic() + timeout
    it = _LINES.setdefault(id(response), response.aiter_lines().__aiter__())
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(it.__anext__(), timeout=max(0.1, deadline - time.monotonic()))
        if line == "":
            if "data" in current:
                frames.append({**current, "data": orjson.loads(current["data"])})
                if until(frames):
                    return frames
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    raise AssertionError(f"stream condition not met; got {[(f.get('event'), f.get('id')) for f in frames]}")


async def test_stream_carries_steps_in_scope_and_resumes_with_last_event_id(registry, alerts, alerts_url, settings):
    puyang = token_for(settings, "county", "410928")
    rid = await register(registry, settings)
    other = await register(registry, settings, county="410922")
    await projected(alerts, rid)
    await projected(alerts, other)
    timeout = httpx.Timeout(30, read=30)
    async with httpx.AsyncClient(base_url=alerts_url) as client:
        # EventSource cannot send a header: the token may come as a query parameter here.
        token = puyang["Authorization"].split()[1]
        async with client.stream("GET", "/v1/alerts/stream", params={"access_token": token},
                                 timeout=timeout) as response:
            assert response.status_code == 200
            ready = await read_sse(response, lambda f: f[-1].get("event") == "ready")
            start = int(ready[-1]["id"])
            await post(registry, settings, [cloud_event(SOS, {"device_id": "X"}, other, county="410922")],
                       county="410922")
            await post(registry, settings, [cloud_event(SOS, {"device_id": "Y"}, rid)])
            frames = await read_sse(response, lambda f: any(x["data"]["alert"]["resident_id"] == rid for x in f))
    mine = [f for f in frames if f.get("event") == "raised"]
    assert all(f["data"]["alert"]["county_code"] == "410928" for f in mine)
    raised = next(f for f in mine if f["data"]["alert"]["resident_id"] == rid)
    assert raised["data"]["alert"]["severity"] == "critical" and int(raised["id"]) > start
    alert_id = raised["data"]["alert"]["id"]
    assert (await alerts.post(f"/v1/alerts/{alert_id}/ack", headers=puyang)).status_code == 200
    # Reconnect after the frame we saw: the acknowledgement (made while away) comes first.
    async with httpx.AsyncClient(base_url=alerts_url) as client:
        async with client.stream("GET", "/v1/alerts/stream", headers={**puyang, "Last-Event-ID": raised["id"]},
                                 timeout=timeout) as response:
            frames = await read_sse(response, lambda f: any(x.get("event") == "acknowledged" for x in f))
    resumed = [f for f in frames if f.get("event") not in ("ready",)]
    assert resumed and all(int(f["id"]) > int(raised["id"]) for f in resumed)
    ack = next(f for f in resumed if f["event"] == "acknowledged")
    assert ack["data"]["alert"]["id"] == alert_id and ack["data"]["data"]["seconds_to_acknowledge"] >= 0
    bad = await alerts.get("/v1/alerts/stream", headers={**puyang, "Last-Event-ID": "abc"})
    assert bad.status_code == 400 and bad.json()["field"] == "Last-Event-ID"
    listing = await alerts.get("/v1/alerts", params={"access_token": token})
    assert listing.status_code == 401  # a token in a URL is accepted by the stream only


class Receiver:
    """A real HTTP receiver on 127.0.0.1: verifies signatures, can fail or stall on demand."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[dict] = []
        self.fail_first = 0
        self.stall_s = 0.0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        status = 204
        if self.fail_first > 0:
            self.fail_first -= 1
            status = 503
        else:
            ok = verify(self.secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body,
                        headers["webhook-signature"])
            self.received.append({"headers": headers, "body": orjson.loads(body), "verified": ok})
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_webhooks_are_signed_retried_with_backoff_and_dead_letters_are_visible(registry, alerts, settings):
    from eldercare.infra import free_port
    from services.alerts.domain.webhooks import new_secret

    puyang = token_for(settings, "county", "410922")
    secret = new_secret()
    receiver = Receiver(secret)
    receiver.fail_first = 2
    port = free_port()
    server, task = await serve(receiver, port)
    dead_port = free_port()  # nothing listens there
    try:
        refused = await alerts.post("/v1/subscriptions", headers=puyang, json={
            "url": f"http://127.0.0.1:{port}/hook", "county_code": "410928"})
        assert refused.status_code == 403
        made = await alerts.post("/v1/subscriptions", headers=puyang, json={
            "url": f"http://127.0.0.1:{port}/hook", "county_code": "410922", "severities": ["critical"],
            "secret": secret})
        assert made.status_code == 201, made.text
        broken = await alerts.post("/v1/subscriptions", headers=puyang, json={
            "url": f"http://127.0.0.1:{dead_port}/hook", "county_code": "410922", "severities": ["critical"]})
        assert broken.json()["secret"].startswith("whsec_")
        rid = await register(registry, settings, county="410922")
        await projected(alerts, rid)
        await post(registry, settings, [cloud_event(SOS, {"device_id": "W"}, rid, county="410922")], county="410922")
        alert = await wait_alert(alerts, puyang, rid, "sos")

        async def delivered():
            return [r for r in receiver.received if r["body"]["subject"] == alert["id"]] or None

        got = await wait_for(delivered, 30)
        assert got[0]["verified"] and got[0]["body"]["type"] == "eldercare.alert.raised.v1"
        assert got[0]["headers"]["webhook-id"] == got[0]["body"]["id"]
        sub_id = made.json()["id"]

        async def recorded():
            rows = (await alerts.get(f"/v1/subscriptions/{sub_id}/deliveries", headers=puyang)).json()["items"]
            mine = next(r for r in rows if r["msg_id"] == got[0]["body"]["id"])
            return mine if mine["status"] == "delivered" else None

        mine = await wait_for(recorded, 10)
        assert mine["attempts"] == 3 and mine["last_status"] == 204  # two 503s, then success
        # The broken receiver's deliveries are retried, their errors visible, then dead-lettered.
        runtime = alerts.app.state.runtime
        async with runtime.db.transaction() as conn:
            await conn.execute("UPDATE deliveries SET attempts = 7, next_attempt_at = now() "
                               "WHERE subscription_id = $1", uuid.UUID(broken.json()["id"]))

        async def dead():
            items = (await alerts.get(f"/v1/subscriptions/{broken.json()['id']}/deliveries", headers=puyang,
                                      params={"status": "dead"})).json()["items"]
            return items or None

        items = await wait_for(dead, 30)
        assert items[0]["attempts"] == 8 and "ConnectError" in items[0]["last_error"]
        listing = (await alerts.get("/v1/subscriptions", headers=puyang)).json()["items"]
        assert next(s for s in listing if s["id"] == broken.json()["id"])["deliveries"]["dead"] >= 1
        assert all("secret" not in s for s in listing)
        # A receiver that stalls holds up only its own deliveries: the next SOS is detected at once.
        receiver.stall_s = 4.0
        again = await register(registry, settings, county="410922")
        await projected(alerts, again)
        await post(registry, settings, [cloud_event(SOS, {"device_id": "W2"}, again, county="410922")],
                   county="410922")
        await asyncio.sleep(1.0)  # the first delivery to the stalled receiver is in flight
        await post(registry, settings, [cloud_event(SOS, {"device_id": "W3"}, rid, county="410922")],
                   county="410922")
        started = time.monotonic()
        await wait_alert(alerts, puyang, rid, "sos", count=2, timeout=10)
        assert time.monotonic() - started < 2.0
    finally:
        receiver.stall_s = 0
        await alerts.delete(f"/v1/subscriptions/{made.json()['id']}", headers=puyang)
        server.should_exit = True
        await task
