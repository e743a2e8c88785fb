"""The county platform simulator (SPEC §4): what the eight county platforms post to the registry's
ingest gateway, so a freshly started platform shows a living city — every county's facilities with
their beds (the task list's built counts, plus private institutions), staff training sessions,
family elder-care beds being set up, visits, and a steady stream of device signs of life and vital
signs, with the rare SOS or fall.

The rules (what a county has, what an event looks like) are pure functions; `CountySimulator` only
posts them through the public API with each county's own token, as a county platform would."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx

from eldercare.actors import Resident, Tally
from eldercare.calendar import SimClock, draw, expected
from shared.auth import Role, issue_token
from shared.regions import TOWNSHIPS, County, load_counties
from shared.settings import PlatformSettings

log = logging.getLogger(__name__)

# Beds per facility of each type (min, max): county special-care homes are the big public ones,
# happiness homes (村级幸福院) are day rooms with a few rest beds.
FACILITY_BEDS: dict[str, tuple[int, int]] = {
    "county_special_care": (150, 300),
    "street_center": (30, 80),
    "daycare_center": (8, 30),
    "township_home": (40, 120),
    "happiness_home": (0, 12),
    "institution": (100, 400),
}
FACILITY_SUFFIX = {
    "county_special_care": "县级特困人员供养服务机构", "street_center": "街道综合养老服务中心",
    "daycare_center": "社区日间照料中心", "township_home": "敬老院", "happiness_home": "幸福院",
    "institution": "颐养院",
}
# One private institution per this many elders (the task list counts public facilities only).
ELDERS_PER_INSTITUTION = 30_000
COURSES = ("失能老人照护实务", "老年人能力评估员培训", "养老护理员初级", "消防安全与应急处置", "认知障碍照护")
VISITORS = ("网格员", "村医", "志愿者", "民政助理员", "社工")


@dataclass(frozen=True, slots=True)
class Facility:
    facility_id: str
    facility_type: str
    name: str
    beds: int
    nursing_beds: int
    occupied: int


def facility_counts(county: County) -> dict[str, int]:
    """How many facilities of each type the county reports: the task list's built/existing counts."""
    return {
        "county_special_care": county.county_special_care_built,
        "street_center": county.street_center_built,
        "daycare_center": county.daycare_center_built,
        "township_home": county.township_homes_existing,
        "happiness_home": county.happiness_homes_built,
        "institution": max(1, county.elderly_60plus // ELDERS_PER_INSTITUTION),
    }


def facility_inventory(county: County, seed: int = 42) -> list[Facility]:
    """The county's facilities, the same for the same seed: beds in each type's range, a nursing
    share of 35-70 % and occupancy of 50-90 % (never more nursing beds or residents than beds)."""
    rng = random.Random(f"{seed}:{county.code}")
    townships = TOWNSHIPS.get(county.code) or [county.name_zh]
    facilities = []
    for facility_type, count in facility_counts(county).items():
        low, high = FACILITY_BEDS[facility_type]
        for n in range(count):
            beds = rng.randint(low, high)
            place = townships[n % len(townships)] if facility_type != "county_special_care" else county.name_zh
            facilities.append(Facility(
                facility_id=f"{county.code}-{facility_type}-{n + 1:03d}",
                facility_type=facility_type,
                name=f"{place}{FACILITY_SUFFIX[facility_type]}" + (f"{n // len(townships) + 1}号"
                                                                   if n >= len(townships) else ""),
                beds=beds,
                nursing_beds=int(beds * rng.uniform(0.35, 0.7)),
                occupied=int(beds * rng.uniform(0.5, 0.9)),
            ))
    return facilities


def with_new_occupancy(facility: Facility, rng: random.Random) -> Facility:
    """The same facility a little later: a few residents in or out."""
    occupied = min(facility.beds, max(0, facility.occupied + rng.randint(-3, 3)))
    return Facility(facility.facility_id, facility.facility_type, facility.name, facility.beds,
                    facility.nursing_beds, occupied)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def county_event(county_code: str, event_type: str, data: dict, subject: str | None = None) -> dict:
    """A CloudEvent as a county platform posts it."""
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county_code}/simulator",
             "type": f"eldercare.county.{event_type}.v1", "time": _now(), "countycode": county_code,
             "datacontenttype": "application/json", "data": data}
    if subject is not None:
        event["subject"] = subject
    return event


def facility_event(county_code: str, facility: Facility) -> dict:
    return county_event(county_code, "facility.reported", {
        "facility_id": facility.facility_id, "facility_type": facility.facility_type, "name": facility.name,
        "beds": facility.beds, "nursing_beds": facility.nursing_beds, "occupied": facility.occupied})


def training_event(county_code: str, rng: random.Random) -> dict:
    return county_event(county_code, "training.recorded",
                        {"course": rng.choice(COURSES), "trainees": rng.randint(15, 60)})


HISTORY_NAMESPACE = uuid.UUID("6f1c3c52-94a1-4c55-9b0e-2f3e8d0a7c11")


def training_history(county: County, seed: int = 42) -> list[dict]:
    """The sessions a county held earlier this year, 30-70 % of its training task. Their event ids are
    fixed by the seed, so a restarted simulator posts the same events and the gateway's
    de-duplication keeps the totals from growing with every start."""
    rng = random.Random(f"{seed}:{county.code}:training")
    goal = int(county.training_task_2022 * rng.uniform(0.3, 0.7))
    events, total, n = [], 0, 0
    while total < goal:
        event = training_event(county.code, rng)
        event["id"] = str(uuid.uuid5(HISTORY_NAMESPACE, f"{seed}:{county.code}:training:{n}"))
        events.append(event)
        total += event["data"]["trainees"]
        n += 1
    return events


ALARM_SHARE = 0.001  # of device events: SOS and falls, half each


def device_event(county_code: str, resident_id: str, rng: random.Random, alarm_share: float = ALARM_SHARE) -> dict:
    """Mostly signs of life, some vital signs, one in a thousand an SOS or a fall."""
    device = f"D-{resident_id[:8]}"
    roll = rng.random()
    if roll < alarm_share / 2:
        return county_event(county_code, "device.sos", {"device_id": device}, resident_id)
    if roll < alarm_share:
        return county_event(county_code, "device.fall",
                            {"device_id": device, "confidence": round(rng.uniform(0.6, 0.99), 2)}, resident_id)
    if roll < 0.8:
        kind = rng.choice(("heartbeat", "heartbeat", "motion", "door", "water", "power"))
        return county_event(county_code, "device.activity", {"device_id": device, "kind": kind}, resident_id)
    return county_event(county_code, "device.vitals", {
        "device_id": f"B-{resident_id[:8]}", "heart_rate": rng.randint(55, 105), "spo2": rng.randint(92, 100),
        "systolic": rng.randint(105, 160), "diastolic": rng.randint(60, 95)}, resident_id)


def visit_event(county_code: str, resident_id: str, rng: random.Random) -> dict:
    return county_event(county_code, "visit.logged", {
        "visitor": rng.choice(VISITORS), "kind": rng.choice(("home", "home", "phone", "video")), "at": _now()},
        resident_id)


def events_per_county(total_per_s: float, counties: list[County]) -> dict[str, float]:
    """The city's event rate shared by elderly population."""
    elders = sum(c.elderly_60plus for c in counties) or 1
    return {c.code: total_per_s * c.elderly_60plus / elders for c in counties}


# Yearly figures the calendar turns into rates (per county, from its elderly population or task).
FAMILY_BEDS_PER_ELDER_YEAR = 0.0072   # the task list's 7.2‰: the year's family beds take the year
VISITS_PER_ELDER_YEAR = 2.0           # grid workers', village doctors' and volunteers' logged visits
MEAN_TRAINEES = 37.5                  # training_event's 15-60 a session
MISTAKE_SHARE = 0.002                 # of device events: a duplicate, a malformed one, an unknown resident


def yearly_figures(county: County) -> dict[str, float]:
    """What a county posts in a year besides telemetry."""
    return {"family_bed": county.elderly_60plus * FAMILY_BEDS_PER_ELDER_YEAR,
            "visit": county.elderly_60plus * VISITS_PER_ELDER_YEAR,
            "training": county.training_task_2022 / MEAN_TRAINEES}


def malformed_event(county_code: str, resident_id: str, rng: random.Random) -> dict:
    """A county platform's bug: an event the gateway must refuse, naming the field."""
    event = device_event(county_code, resident_id, rng)
    broken = rng.choice(("type", "unknown type", "data"))
    if broken == "data":
        event["data"] = "not an object"
    elif broken == "unknown type":
        event["type"] = "eldercare.county.device.teleported.v1"
    else:
        event.pop("type")
    return event


class CountySimulator:
    """Posts each county's events to the registry's ingest gateway once a second: telemetry at
    `events_per_s` city-wide (a sample of devices, round the clock), family beds, visits and
    training at the calendar's rates (yearly figures, day/night rhythm, time compression), and a
    small share of mistakes (a re-sent event, a malformed one, one for a resident nobody knows)."""

    def __init__(self, settings: PlatformSettings, client: httpx.AsyncClient, *, events_per_s: float = 50.0,
                 seed: int = 42, sample_size: int = 500, clock: SimClock | None = None,
                 tally: Tally | None = None, alarm_share: float = ALARM_SHARE,
                 mistake_share: float = MISTAKE_SHARE) -> None:
        self.client = client
        self.alarm_share, self.mistake_share = alarm_share, mistake_share
        self.rng = random.Random(seed)
        self.seed = seed
        self.counties = list(load_counties().values())
        self.rates = events_per_county(events_per_s, self.counties)
        self.yearly = {c.code: yearly_figures(c) for c in self.counties}
        self.sample_size = sample_size
        self.settings = settings
        self.clock = clock or SimClock()
        self.tally = tally or Tally()
        self._tokens: dict[str, tuple[dict, float]] = {}
        self.facilities = {c.code: facility_inventory(c, seed) for c in self.counties}
        self.residents: dict[str, list[str]] = {}
        self.homes: dict[str, list[Resident]] = {}
        self.accepted = 0
        self.rejected = 0
        self.sent: Counter = Counter()      # event kind -> posted
        self.taken: Counter = Counter()     # event kind -> accepted by the gateway
        self._recent: dict[str, list[dict]] = {}  # a few accepted events per county, to re-send by mistake
        self._last_tick = time.monotonic()

    async def start(self) -> None:
        """Learn some residents of each county and report every facility once."""
        for county in self.counties:
            found = await self._sample_residents(county.code)
            self.homes[county.code] = found
            self.residents[county.code] = [r.id for r in found]
            events = [facility_event(county.code, f) for f in self.facilities[county.code]]
            events += training_history(county, self.seed)
            for i in range(0, len(events), 1000):
                await self._post(county.code, events[i:i + 1000])

    async def tick(self, seconds: float | None = None) -> None:
        """One tick of the city (`seconds` of real time since the last one; default: measured)."""
        now = time.monotonic()
        seconds = now - self._last_tick if seconds is None else seconds
        self._last_tick = now
        # The batches are drawn in county order (the same seed, the same choices), then the eight
        # platforms post side by side, as eight separate systems do.
        batches = [(county.code, self._batch(county.code, max(0.0, min(seconds, 5.0)))) for county in self.counties]

        async def post(code: str, events: list[dict]) -> None:
            for i in range(0, len(events), 1000):  # the gateway takes up to 1,000 a request
                await self._post(code, events[i:i + 1000])

        outcomes = await asyncio.gather(*(post(code, events) for code, events in batches if events),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def run(self, seconds: float | None = None) -> None:
        """Start, then tick every second until cancelled (or for `seconds`)."""
        await self.start()
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            started = time.monotonic()
            try:
                await self.tick()
            except httpx.HTTPError as exc:  # the registry restarting: carry on next second
                log.warning("simulator: posting failed (%s); retrying", exc)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    def _batch(self, county_code: str, seconds: float = 1.0) -> list[dict]:
        rng, residents = self.rng, self.residents.get(county_code) or []
        rate = self.rates[county_code] * seconds
        count = int(rate) + (rng.random() < rate - int(rate))
        events = [device_event(county_code, rng.choice(residents), rng, self.alarm_share)
                  for _ in range(count)] if residents else []
        simulated = self.clock.compression * seconds
        hour = self.clock.hour()
        yearly = self.yearly[county_code]
        if residents:
            for _ in range(draw(expected(yearly["family_bed"], simulated, hour), rng)):
                events.append(county_event(county_code, "family_bed.established", {}, rng.choice(residents)))
            for _ in range(draw(expected(yearly["visit"], simulated, hour), rng)):
                events.append(visit_event(county_code, rng.choice(residents), rng))
        for _ in range(draw(expected(yearly["training"], simulated, hour), rng)):
            events.append(training_event(county_code, rng))
        if rng.random() < rate / 50:
            facilities = self.facilities[county_code]
            i = rng.randrange(len(facilities))
            facilities[i] = with_new_occupancy(facilities[i], rng)
            events.append(facility_event(county_code, facilities[i]))
        mistakes = draw(rate * self.mistake_share, rng) if residents else 0
        recent = self._recent.get(county_code)
        for _ in range(mistakes):
            kind = rng.choice(("duplicate", "malformed", "unknown"))
            if kind == "duplicate" and recent:
                event = dict(rng.choice(recent))
                event["_expect"] = "duplicate"
            elif kind == "malformed":
                event = malformed_event(county_code, rng.choice(residents), rng)
                event["_expect"] = "rejected"
            else:
                event = device_event(county_code, str(uuid.UUID(int=rng.getrandbits(128))), rng)
                event["_expect"] = "rejected"
            events.append(event)
        return events

    def headers(self, county_code: str) -> dict:
        """Each county's token, addressed to the registry, with the platform's ordinary lifetime and
        renewed halfway through it (the simulator runs as long as `make up`; no long-lived tokens)."""
        headers, renew_at = self._tokens.get(county_code, ({}, 0.0))
        if time.monotonic() >= renew_at:
            ttl = self.settings.jwt_ttl_seconds
            headers = {"Authorization": "Bearer " + issue_token(
                self.settings, Role.COUNTY, county=county_code, subject=f"simulator:{county_code}",
                ttl_seconds=ttl, audience="registry")}
            self._tokens[county_code] = (headers, time.monotonic() + ttl / 2)
        return headers

    async def _sample_residents(self, county_code: str) -> list[Resident]:
        response = await self.client.post("/v1/residents/search", headers=self.headers(county_code), json={
            "county_code": county_code, "status": "active", "limit": self.sample_size, "with_total": False})
        if response.status_code != 200:
            log.warning("simulator: cannot list residents of %s: %s", county_code, response.text[:200])
            return []
        found = []
        for item in response.json()["items"]:
            lat, lon = item.get("home_lat"), item.get("home_lon")
            found.append(Resident(item["id"], county_code, (lat, lon) if lat is not None and lon is not None else None))
        return found

    @staticmethod
    def kind(event: dict) -> str:
        name = str(event.get("type", "?")).removeprefix("eldercare.county.").removesuffix(".v1")
        return name if "_expect" not in event else "mistake"

    async def _post(self, county_code: str, events: list[dict]) -> None:
        expect = {i: e.pop("_expect") for i, e in enumerate(events) if "_expect" in e}
        kinds = [self.kind(e) if i not in expect else "mistake" for i, e in enumerate(events)]
        for k in kinds:
            self.sent[k] += 1
        sent = time.perf_counter()
        try:
            response = await self.client.post("/v1/events", headers=self.headers(county_code), json=events)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # The server closed a kept-alive connection as this request went out (seen under `make
            # up`): send the batch once more on a fresh one. Events carry their ids, so anything the
            # first attempt delivered comes back as a duplicate, never as a second event.
            sent = time.perf_counter()
            response = await self.client.post("/v1/events", headers=self.headers(county_code), json=events)
        self.tally.latency_ms["registry"].append((time.perf_counter() - sent) * 1000)
        if response.status_code >= 500:
            raise httpx.HTTPStatusError("registry error", request=response.request, response=response)
        body = response.json()
        if response.status_code != 200 and "results" not in body:
            self.tally.unexpected("gateway", f"{response.status_code}: {response.text[:300]}", "refused")
            return
        unexpected = []
        for result in body.get("results", []):
            i, status = result["index"], result["status"]
            if i in expect:
                if status == expect[i]:
                    self.tally.add("gateway.mistake", "caught" if status == "rejected" else "same")
                else:
                    self.tally.unexpected("gateway.mistake", f"{status}, expected {expect[i]}: {result}", "let-through")
                continue
            if status == "accepted":
                self.accepted += 1
                self.taken[kinds[i]] += 1
                self.tally.add(f"gateway.{kinds[i]}", "ok")
                recent = self._recent.setdefault(county_code, [])
                if len(recent) < 50:
                    recent.append(events[i])
                elif self.rng.random() < 0.05:
                    recent[self.rng.randrange(50)] = events[i]
            elif status == "duplicate":
                # a restart re-posting the training history (fixed ids) is answered as a duplicate
                self.tally.add(f"gateway.{kinds[i]}", "same")
            else:
                self.rejected += 1
                self.tally.unexpected(f"gateway.{kinds[i]}", f"rejected: {result}", "refused")
                unexpected.append(result)
        if unexpected:
            log.warning("simulator: %s rejected %d events: %s", county_code, len(unexpected), unexpected[:3])
