"""The people the simulator plays besides the county platforms (SPEC §4 users), each through the
public API with a token of the role the spec gives them:

- each county's civil-affairs office (`county`) registers the synthetic city's providers and
  their caregivers in orders, places orders for residents at the county's service desk and for
  the 12345 hotline, confirms explained exception visits and records the family's rating;
- providers (`provider`) order for their clients, accept or reject, assign a qualified caregiver;
- caregivers (`caregiver`) order from their app, check in and out near the resident's home (or,
  now and then, late, far away or twice) and explain an exception visit;
- duty operators (`county`) acknowledge, dispatch and resolve the alerts of their county after
  human delays (most within a minute, some not).

Every call is tallied by kind and outcome (`Tally`): accepted, refused (a 4xx the platform gave
for a reason it names), a mistake the platform caught (bad input made on purpose, answered 4xx),
a retry answered the same (same Idempotency-Key), or unexpected (a mistake let through, a 5xx, a
transport error). Each order's and alert's story is one task with its own random generator,
drawn from the seed and its sequence number, so a run with the same seed makes the same
choices."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import httpx

from eldercare.calendar import SimClock, draw, expected
from shared.auth import Role, issue_token
from shared.settings import PlatformSettings

log = logging.getLogger(__name__)

MIN_LEAD_S = 20.0
# Pauses between the tries of a call that got no answer or a 503 (about 40 s in all: a killed
# service is started again within that).
RETRY_DELAYS_S = (0.5, 1, 2, 4, 8, 8, 8, 8)
OUTCOMES = ("ok", "refused", "caught", "same", "retried", "unexpected")
# Roughly where each county's seat is (a caregiver's phone reports a point near the resident's
# home when the registry knows it; otherwise near the county seat, which the geofence then
# cannot judge).
COUNTY_SEATS = {
    "410902": (35.762, 115.029), "410922": (35.902, 115.117), "410923": (36.070, 115.204),
    "410926": (35.852, 115.504), "410927": (35.997, 115.871), "410928": (35.711, 115.015),
    "410971": (35.737, 115.136), "410972": (35.690, 114.970),
}
PROVIDER_TYPES = ("street_centre", "daycare_centre", "township_home", "institution", "company")
PROVIDER_NAMES = ("居家养老服务中心", "颐康护理服务有限公司", "邻里助餐点", "夕阳红家政服务部", "仁爱医养结合中心")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ("秀英", "桂兰", "建华", "玉梅", "国强", "红霞", "丽娟", "志刚", "海燕", "春梅", "立新", "淑珍")
REJECT_REASONS = ("当日人手不足", "超出服务半径", "老人家属另有安排")
CANCEL_REASONS = ("家属临时取消", "老人住院", "改约其他时间")
EXCEPTION_REASONS = {
    "outside_geofence": "老人在邻居家，服务在邻居家完成",
    "short_visit": "老人要求提前结束服务",
    "caregiver_in_two_places": "前一单签退时手机无信号，补签",
}
COMMENTS = ("服务很周到", "准时，态度好", "下次还找这位护理员", None, None)
# Who is sent for each critical cause, and how the alert usually ends.
DISPATCH = {"sos": ["emergency_contact", "community"], "fall": ["ambulance_120", "emergency_contact"]}
RESOLUTIONS = {
    "sos": ("helped_at_home", "false_alarm", "resolved_by_family", "taken_to_hospital"),
    "fall": ("taken_to_hospital", "helped_at_home", "false_alarm"),
}
WARNING_RESOLUTIONS = ("no_action_needed", "device_fixed", "visited", "resolved_by_family")


@dataclass
class Tally:
    """What was sent and what came back, per kind of call."""

    rows: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    refusals: Counter = field(default_factory=Counter)  # (kind, status, field) of refusals and catches
    problems: list[str] = field(default_factory=list)  # the first unexpected answers, for the log
    # Unexpected answers by what they were: "transport" (no answer: a service restarting),
    # "unavailable" (503), "server" (other 5xx), "refused" (a 4xx nobody planned), "let-through"
    # (a mistake accepted), "retry-differs" (a retry not answered the same), "bug" (the simulator's).
    unexpected_by: Counter = field(default_factory=Counter)
    # Milliseconds each answered request took, per service (the end-to-end benchmark reads them).
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, outcome: str, n: int = 1) -> None:
        self.rows[kind][outcome] += n

    def unexpected(self, kind: str, what: str, category: str = "bug") -> None:
        self.add(kind, "unexpected")
        self.unexpected_by[category] += 1
        if len(self.problems) < 50:
            self.problems.append(f"{kind}: {what}")
        log.warning("simulator: unexpected answer to %s: %s", kind, what)

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.rows.values())

    def as_dict(self) -> dict:
        return {kind: {o: c[o] for o in OUTCOMES if c[o]} for kind, c in sorted(self.rows.items())}


def _field(response: httpx.Response) -> str:
    """The field a problem names (RFC 9457 body), or ""."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if body.get("field"):
        return str(body["field"])
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("field") or errors[0].get("loc") or "")
    return ""


def _body(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return response.content


def _category(status: int, mistake: bool = False) -> str:
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "server"
    return "let-through" if mistake else "refused"


class Caller:
    """HTTP calls to one service with per-role tokens, tallied."""

    def __init__(self, settings: PlatformSettings, client: httpx.AsyncClient, audience: str, tally: Tally) -> None:
        self.settings, self.client, self.audience, self.tally = settings, client, audience, tally
        self._tokens: dict[tuple, tuple[dict, float]] = {}

    def headers(self, role: Role, *, county: str | None = None, provider_id: str | None = None,
                caregiver_id: str | None = None, subject: str) -> dict:
        key = (role, county, provider_id, caregiver_id, subject)
        loop = asyncio.get_running_loop()
        headers, renew_at = self._tokens.get(key, ({}, 0.0))
        if loop.time() >= renew_at:
            ttl = self.settings.jwt_ttl_seconds
            headers = {"Authorization": "Bearer " + issue_token(
                self.settings, role, county=county, subject=subject, provider_id=provider_id,
                caregiver_id=caregiver_id, ttl_seconds=ttl, audience=self.audience)}
            self._tokens[key] = (headers, loop.time() + ttl / 2)
        return headers

    async def call(self, kind: str, method: str, path: str, headers: dict, *, json=None, key: str | None = None,
                   ok=(200, 201), mistake: bool = False, retry_of: httpx.Response | None = None,
                   refusable=()) -> httpx.Response | None:
        """One call, tallied. `mistake`: bad input on purpose, which must be answered 4xx;
        `retry_of`: a retry with the same Idempotency-Key, which must get the same answer;
        `refusable`: statuses that are an honest refusal (named in the problem), not a failure."""
        if key is not None:
            headers = {**headers, "Idempotency-Key": key}
        response: httpx.Response | None = None
        error: Exception | None = None
        for pause in (*RETRY_DELAYS_S, None):
            try:
                sent = time.perf_counter()
                response = await self.client.request(method, path, headers=headers, json=json)
                self.tally.latency_ms[self.audience].append((time.perf_counter() - sent) * 1000)
            except httpx.TransportError as exc:
                response, error = None, exc
            if (response is not None and response.status_code != 503) or pause is None:
                break
            # No answer (a service restarting) or 503: the app tries again a little later, with the
            # same Idempotency-Key (a step without one may find itself already taken: see _step).
            self.tally.add(kind, "retried")
            await asyncio.sleep(pause)
        if response is None:
            self.tally.unexpected(kind, f"{method} {path}: {type(error).__name__} {error}", "transport")
            return None
        status = response.status_code
        if mistake:
            if 400 <= status < 500:
                self.tally.add(kind, "caught")
                self.tally.refusals[(kind, status, _field(response))] += 1
            else:
                self.tally.unexpected(kind, f"a mistake got {status}: {response.text[:200]}", _category(status, True))
            return response
        if retry_of is not None:
            if status == retry_of.status_code and _body(response) == _body(retry_of):
                self.tally.add(kind, "same")
            else:
                self.tally.unexpected(kind, f"a retry got {status}, first {retry_of.status_code}",
                                      _category(status) if status >= 500 else "retry-differs")
            return response
        if status in ok:
            self.tally.add(kind, "ok")
        elif status in refusable:
            self.tally.add(kind, "refused")
            self.tally.refusals[(kind, status, _field(response))] += 1
        else:
            self.tally.unexpected(kind, f"{method} {path} -> {status}: {response.text[:300]}", _category(status))
        return response


@dataclass
class Caregiver:
    id: str
    provider_id: str
    qualification: str  # the strongest certificate held


@dataclass
class Provider:
    id: str
    county: str
    offers: dict[str, int]  # service code -> price fen
    caregivers: list[Caregiver]


QUALIFICATION_RANK = {None: 0, "nursing_assistant": 1, "nurse": 2, "doctor": 3}


def synthetic_parties(county: str, menu: list[dict], seed: int, providers_per_county: int = 3,
                      caregivers_per_provider: int = 4) -> list[dict]:
    """The providers of a county and their caregivers, the same for the same seed: each offers
    the menu items anyone may order (and a few needing a nurse), near the base price, with a
    daily capacity; caregivers hold 养老护理员 certificates, every fourth a nurse's."""
    rng = random.Random(f"{seed}:{county}:parties")
    open_items = [m for m in menu if not m.get("eligibility") and QUALIFICATION_RANK[m.get("qualification")] <= 2]
    parties = []
    today = date.today()
    for p in range(1, providers_per_county + 1):
        pid = f"sim-{county}-p{p}"
        offered = rng.sample(open_items, min(len(open_items), rng.randint(5, 9)))
        items = [{"service_code": m["code"], "price_fen": int(m["base_price_fen"] * rng.uniform(0.85, 1.15)) // 10 * 10,
                  "daily_capacity": rng.choice((200, 400, 1000))} for m in offered]
        caregivers = []
        for c in range(1, caregivers_per_provider + 1):
            nurse = c % 4 == 0
            certificates = [{"kind": "nursing_assistant", "level": "四级", "number": f"NA{county}{p}{c:03d}",
                             "expires_on": (today + timedelta(days=rng.randint(200, 1400))).isoformat()}]
            if nurse:
                certificates.append({"kind": "nurse", "number": f"RN{county}{p}{c:03d}",
                                     "expires_on": (today + timedelta(days=rng.randint(300, 1800))).isoformat()})
            caregivers.append({"id": f"{pid}-c{c}", "provider_id": pid,
                               "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
                               "phone": f"139{rng.randrange(10**8):08d}", "certificates": certificates})
        parties.append({"provider": {"id": pid, "name": f"{county}{PROVIDER_NAMES[(p - 1) % len(PROVIDER_NAMES)]}",
                                     "provider_type": PROVIDER_TYPES[(p - 1) % len(PROVIDER_TYPES)],
                                     "county_code": county, "items": items},
                        "caregivers": caregivers})
    return parties


def near(point: tuple[float, float], metres: float, rng: random.Random) -> tuple[float, float]:
    """A point about `metres` from `point`, in a random direction."""
    bearing = rng.uniform(0, 2 * math.pi)
    dlat = metres * math.cos(bearing) / 111_320
    dlon = metres * math.sin(bearing) / (111_320 * math.cos(math.radians(point[0])))
    return round(point[0] + dlat, 6), round(point[1] + dlon, 6)


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


@dataclass
class Resident:
    id: str
    county: str
    home: tuple[float, float] | None = None


class OrdersActors:
    """Offices, providers and caregivers working service orders."""

    def __init__(self, settings: PlatformSettings, client: httpx.AsyncClient, tally: Tally, clock: SimClock, *,
                 seed: int, orders_per_day: float, residents: dict[str, list[Resident]],
                 county_weights: dict[str, float], mistake_share: float = 0.03) -> None:
        self.api = Caller(settings, client, "orders", tally)
        self.mistake_share = mistake_share
        self.tally, self.clock, self.seed = tally, clock, seed
        self.orders_per_day = orders_per_day
        self.residents = residents
        self.weights = county_weights
        self.providers: dict[str, list[Provider]] = {}
        self.rng = random.Random(f"{seed}:orders")
        self.placed = 0
        self.tasks: set[asyncio.Task] = set()
        self.final: Counter = Counter()  # how each story ended
        self.orders: dict[str, str] = {}  # order id -> the state the simulator last saw
        self.menu_minutes: dict[str, int] = {}
        self.run = uuid.uuid4()
        self.qualification: dict[str, str | None] = {}

    def office(self, county: str) -> dict:
        return self.api.headers(Role.COUNTY, county=county, subject=f"sim.office.{county}")

    async def setup(self) -> None:
        """Register every county's providers and caregivers (once: ids are fixed, a second start
        finds them there) and learn what each offers."""
        for county in self.residents:
            menu = await self.api.client.get("/v1/catalog", params={"county": county}, headers=self.office(county))
            if menu.status_code != 200:
                self.tally.unexpected("catalog", f"{menu.status_code} {menu.text[:200]}", _category(menu.status_code))
                continue
            items = menu.json()["items"]
            self.menu_minutes = {m["code"]: m["minutes_per_unit"] for m in items}
            self.qualification = {m["code"]: m["qualification"] for m in items}
            parties = synthetic_parties(county, items, self.seed)
            known = []
            for party in parties:
                body = party["provider"]
                r = await self.api.call("provider.register", "POST", "/v1/providers", self.office(county), json=body,
                                        key=f"sim-provider-{body['id']}", ok=(201,), refusable=(409,))
                if r is None:
                    continue
                caregivers = []
                for cg in party["caregivers"]:
                    r = await self.api.call("caregiver.register", "POST", "/v1/caregivers", self.office(county),
                                            json=cg, key=f"sim-caregiver-{cg['id']}", ok=(201,), refusable=(409,))
                    if r is not None:
                        kinds = [c["kind"] for c in cg["certificates"]]
                        caregivers.append(Caregiver(cg["id"], body["id"], "nurse" if "nurse" in kinds else
                                                    "nursing_assistant"))
                offers = {i["service_code"]: i["price_fen"] for i in body["items"]}
                known.append(Provider(body["id"], county, offers, caregivers))
            self.providers[county] = known

    def tick(self, seconds: float) -> None:
        """Start the orders placed in `seconds` of real time (the calendar's rate and rhythm)."""
        mean = expected(self.orders_per_day * 365, self.clock.compression * seconds, self.clock.hour())
        for _ in range(draw(mean, self.rng)):
            self.placed += 1
            task = asyncio.create_task(self.story(self.placed))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def sim_sleep(self, minutes: float) -> None:
        await asyncio.sleep(self.clock.real_seconds(minutes * 60))

    async def story(self, n: int) -> None:
        try:
            self.final[await self._story(random.Random(f"{self.seed}:order:{n}"))] += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one story's bug must not stop the city
            self.tally.unexpected("order.story", f"{type(exc).__name__}: {exc}")

    async def _story(self, rng: random.Random) -> str:
        counties = [c for c in self.residents if self.residents[c] and self.providers.get(c)]
        if not counties:
            return "no residents or providers"
        county = rng.choices(counties, [self.weights.get(c, 1) for c in counties])[0]
        resident = rng.choice(self.residents[county])
        provider = rng.choice(self.providers[county])
        caregivers = provider.caregivers
        if not caregivers or not provider.offers:
            return "provider without caregivers"
        code = rng.choice(sorted(provider.offers))
        quantity = 1 if rng.random() < 0.8 else 2
        lead_min = rng.uniform(20, 180)
        # At least MIN_LEAD_S real seconds ahead: the order must still be in the future when it
        # arrives, and accepted before its start (or the scheduler expires it), however busy.
        start = datetime.now(timezone.utc) + timedelta(seconds=max(MIN_LEAD_S, self.clock.real_seconds(lead_min * 60)))
        channel = rng.choices(("caregiver_app", "provider", "county_operator", "hotline"), (35, 25, 25, 15))[0]
        if channel == "caregiver_app":
            cg = rng.choice(caregivers)
            who = self.api.headers(Role.CAREGIVER, caregiver_id=cg.id, subject=f"sim.{cg.id}")
        elif channel == "provider":
            who = self.provider_headers(provider)
        else:
            who = self.api.headers(Role.COUNTY, county=county, subject=f"sim.desk.{county}")
        body = {"resident_id": resident.id, "provider_id": provider.id,
                "items": [{"service_code": code, "quantity": quantity}], "scheduled_start": _iso(start),
                "channel": channel}
        if channel == "hotline":
            body["call_reference"] = f"12345-{rng.randrange(10**8):08d}"
        if rng.random() < self.mistake_share:  # a mistake first: the form sent wrong, refused naming the field
            await self._bad_order(rng, who, body)
        key = self.key(rng)
        placed = await self.api.call("order.place", "POST", "/v1/orders", who, json=body, key=key, ok=(201,),
                                     refusable=(404, 409, 422))
        if placed is None or placed.status_code != 201:
            return "refused" if placed is not None else "unreachable"
        if rng.random() < 0.04:  # the app retried: the same key gets the same order, not a second
            await self.api.call("order.place", "POST", "/v1/orders", who, json=body, key=key, retry_of=placed)
        order = placed.json()
        oid = order["id"]
        self.orders[oid] = "placed"
        prov = self.provider_headers(provider)
        await self.sim_sleep(rng.uniform(2, 25))
        if rng.random() < 0.03:
            return await self._step(oid, "reject", prov, {"reason": rng.choice(REJECT_REASONS)}, "rejected")
        if await self._step(oid, "accept", prov, None, "accepted") != "accepted":
            return self.orders[oid]
        await self.sim_sleep(rng.uniform(1, 15))
        needs = QUALIFICATION_RANK[self.qualification.get(code)]
        able = [c for c in caregivers if QUALIFICATION_RANK[c.qualification] >= needs] or caregivers
        carer = rng.choice(able)
        if await self._step(oid, "assign", prov, {"caregiver_id": carer.id}, "assigned") != "assigned":
            return self.orders[oid]
        if rng.random() < 0.02:
            await self.sim_sleep(rng.uniform(5, 30))
            return await self._step(oid, "cancel", self.office(county), {"reason": rng.choice(CANCEL_REASONS)},
                                    "cancelled")
        if rng.random() < 0.02:
            return "no-show (left to the scheduler)"
        late_min = rng.uniform(-5, 5) if rng.random() < 0.88 else rng.uniform(12, 40)
        wait = (start - datetime.now(timezone.utc)).total_seconds() + self.clock.real_seconds(late_min * 60)
        await asyncio.sleep(max(0.0, wait))
        home = resident.home or COUNTY_SEATS.get(county, (35.76, 115.03))
        far = rng.random() < 0.03
        cg_headers = self.api.headers(Role.CAREGIVER, caregiver_id=carer.id, subject=f"sim.{carer.id}")
        point = near(home, rng.uniform(1500, 4000) if far else rng.uniform(5, 80), rng)
        visit = {"lat": point[0], "lon": point[1], "accuracy_m": round(rng.uniform(5, 35), 1)}
        if await self._step(oid, "check-in", cg_headers, visit, "checked_in") != "checked_in":
            return self.orders[oid]
        if rng.random() < 0.01:  # the app sent the check-in twice: the second is refused, naming the state
            await self.api.call("order.check-in", "POST", f"/v1/orders/{oid}/check-in", cg_headers, json=visit,
                                mistake=True)
        booked = self.menu_minutes.get(code, 30) * quantity
        share = rng.uniform(0.2, 0.4) if rng.random() < 0.03 else rng.uniform(0.85, 1.15)
        await self.sim_sleep(booked * share)
        point = near(home, rng.uniform(5, 80), rng)
        out = await self.api.call("order.check-out", "POST", f"/v1/orders/{oid}/check-out", cg_headers, json={
            "lat": point[0], "lon": point[1], "accuracy_m": round(rng.uniform(5, 35), 1)}, refusable=(409,))
        if out is not None and out.status_code == 409 and out.json().get("current_state") == "completed":
            out = await self.api.client.get(f"/v1/orders/{oid}", headers=cg_headers)  # the lost try went through
        if out is None or out.status_code != 200:
            return "check-out failed"
        self.orders[oid] = "completed"
        evv = out.json()["evv"]
        if evv["status"] == "exception":
            await self.sim_sleep(rng.uniform(5, 60))
            reason = "；".join(EXCEPTION_REASONS.get(e, "现场情况特殊") for e in evv["exceptions"])
            explained = await self.api.call("order.explain", "POST", f"/v1/orders/{oid}/visit-exception",
                                            cg_headers, json={"reason": reason})
            if explained is not None and explained.status_code == 200:
                await self.sim_sleep(rng.uniform(30, 240))
                await self.api.call("order.confirm", "POST", f"/v1/orders/{oid}/confirm-visit", self.office(county),
                                    json={"note": "已电话回访家属核实"})
        if rng.random() < 0.6:
            await self.sim_sleep(rng.uniform(30, 600))
            rating = {"rating": rng.choices((5, 4, 3, 2), (60, 28, 9, 3))[0]}
            comment = rng.choice(COMMENTS)
            if comment:
                rating["comment"] = comment
            return await self._step(oid, "rate", self.office(county), rating, "rated")
        return "completed"

    def key(self, rng: random.Random) -> str:
        """An Idempotency-Key: drawn from the story's generator, within this run (a key is
        remembered by the service, and the next run's order with the same seed is another)."""
        return str(uuid.uuid5(self.run, str(rng.getrandbits(64))))

    def provider_headers(self, provider: Provider) -> dict:
        return self.api.headers(Role.PROVIDER, provider_id=provider.id, subject=f"sim.{provider.id}.dispatcher")

    async def _step(self, oid: str, action: str, headers: dict, body: dict | None, state: str) -> str:
        response = await self.api.call(f"order.{action}", "POST", f"/v1/orders/{oid}/{action}", headers, json=body,
                                       refusable=(409,))
        if response is not None and response.status_code == 200:
            self.orders[oid] = response.json()["state"]
        elif response is not None and response.status_code == 409:
            # Already where this step leads: an earlier try went through and its answer was lost.
            self.orders[oid] = (response.json().get("current_state") or self.orders[oid])
        return self.orders[oid] if response is not None else "unreachable"

    async def _bad_order(self, rng: random.Random, who: dict, body: dict) -> None:
        kind = rng.choice(("past", "quantity", "code", "no-key", "resident"))
        bad = dict(body)
        key: str | None = self.key(rng)
        if kind == "past":
            bad["scheduled_start"] = _iso(datetime.now(timezone.utc) - timedelta(hours=2))
        elif kind == "quantity":
            bad["items"] = [{**body["items"][0], "quantity": 0}]
        elif kind == "code":
            bad["items"] = [{**body["items"][0], "service_code": "massage"}]
        elif kind == "resident":
            bad["resident_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
        else:
            key = None
        await self.api.call("order.place", "POST", "/v1/orders", who, json=bad, key=key, mistake=True)

    async def drain(self, timeout: float) -> None:
        """Let the running stories finish (up to `timeout` seconds), then cancel the rest."""
        if self.tasks:
            done, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class DutyOperators:
    """Each county's duty operator answering its open alerts: acknowledge after a human delay
    (log-normal, median `ack_median_s` real seconds — the KPIs count real time), dispatch for
    SOS and falls, then resolve."""

    def __init__(self, settings: PlatformSettings, client: httpx.AsyncClient, tally: Tally, *, seed: int,
                 counties: list[str], ack_median_s: float = 20.0, pace: float = 1.0,
                 max_in_hand: int = 25) -> None:
        self.api = Caller(settings, client, "alerts", tally)
        self.tally, self.seed, self.counties = tally, seed, counties
        self.ack_median_s, self.pace, self.max_in_hand = ack_median_s, pace, max_in_hand
        self.seen: set[str] = set()
        self.in_hand: Counter = Counter()
        self.tasks: set[asyncio.Task] = set()
        self.handled = 0
        self.outcomes: Counter = Counter()

    def operator(self, county: str) -> dict:
        return self.api.headers(Role.COUNTY, county=county, subject=f"sim.duty.{county}")

    async def poll(self) -> None:
        """Look at each county's open alerts once and take up the new ones."""
        for county in self.counties:
            if self.in_hand[county] >= self.max_in_hand:
                continue
            try:
                r = await self.api.client.get("/v1/alerts", params={"status": "open", "limit": 100},
                                              headers=self.operator(county))
            except httpx.HTTPError as exc:
                self.tally.unexpected("alert.list", f"{type(exc).__name__} {exc}", "transport")
                continue
            if r.status_code != 200:
                self.tally.unexpected("alert.list", f"{r.status_code} {r.text[:200]}", _category(r.status_code))
                continue
            for alert in reversed(r.json()["items"]):  # oldest first
                if alert["id"] in self.seen or self.in_hand[county] >= self.max_in_hand:
                    continue
                self.seen.add(alert["id"])
                self.in_hand[county] += 1
                self.handled += 1
                task = asyncio.create_task(self.answer(county, alert, random.Random(f"{self.seed}:{alert['id']}")))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def answer(self, county: str, alert: dict, rng: random.Random) -> None:
        try:
            self.outcomes[await self._answer(county, alert, rng)] += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            self.tally.unexpected("alert.story", f"{type(exc).__name__}: {exc}")
        finally:
            self.in_hand[county] -= 1

    async def _answer(self, county: str, alert: dict, rng: random.Random) -> str:
        aid, cause = alert["id"], alert["cause"]
        headers = self.operator(county)
        delay = self.ack_median_s * math.exp(rng.gauss(0, 0.6))
        if rng.random() < 0.01:
            delay = rng.uniform(120, 300)  # away from the desk
        await asyncio.sleep(delay)
        key = str(uuid.uuid4())
        ack = await self.api.call("alert.ack", "POST", f"/v1/alerts/{aid}/ack", headers, json={}, key=key,
                                  refusable=(409,))
        if ack is None or ack.status_code != 200:
            return "not acknowledged"
        if rng.random() < 0.03:  # a double click: the same key, the same answer
            await self.api.call("alert.ack", "POST", f"/v1/alerts/{aid}/ack", headers, json={}, key=key,
                                retry_of=ack)
        if rng.random() < 0.02:  # a colleague acknowledges it too: refused, naming the state
            await self.api.call("alert.ack", "POST", f"/v1/alerts/{aid}/ack", self.api.headers(
                Role.COUNTY, county=county, subject=f"sim.duty2.{county}"), json={}, key=str(uuid.uuid4()),
                mistake=True)
        critical = cause in DISPATCH
        if critical:
            await asyncio.sleep(rng.uniform(3, 20) * self.pace)
            await self.api.call("alert.dispatch", "POST", f"/v1/alerts/{aid}/dispatch", headers,
                                json={"targets": DISPATCH[cause], "note": "已电话联系"}, key=str(uuid.uuid4()))
        await asyncio.sleep(rng.uniform(10, 90) * self.pace)
        if rng.random() < 0.02:  # a resolution code that does not exist
            await self.api.call("alert.resolve", "POST", f"/v1/alerts/{aid}/resolve", headers,
                                json={"resolution": "fixed"}, key=str(uuid.uuid4()), mistake=True)
        resolution = rng.choice(RESOLUTIONS.get(cause, WARNING_RESOLUTIONS))
        done = await self.api.call("alert.resolve", "POST", f"/v1/alerts/{aid}/resolve", headers,
                                   json={"resolution": resolution}, key=str(uuid.uuid4()), refusable=(409,))
        return "resolved" if done is not None and done.status_code == 200 else "not resolved"

    async def drain(self, timeout: float) -> None:
        if self.tasks:
            done, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
