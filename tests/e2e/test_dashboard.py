"""The city command-centre page in a real headless Chromium (Debian's `chromium`, driven by
Playwright's Python package), against the registry and reporting services run as real processes.

The services get a database and a broker of their own (a fresh `eldercare_e2e` database on the
suite's PostgreSQL server, a private Tansu broker): the suite's in-process services keep running in
the same session, and on a shared database their relay would hold the registry outbox's leader lock
(and, on a shared broker, their reporting consumer would take partitions whose deltas never reach
this process's live stream), so the page's live updates would depend on test order.

Screenshots of the page (Chinese and English, 1920x1080) are written to docs/ on every run.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from eldercare.infra import free_port
from shared.db import asyncpg_dsn, with_database
from shared.regions import TOWNSHIPS, load_counties
from tests.conftest import fresh_id_number, token_for
from tests.integration.service_events import ALERTS_TOPIC, ORDERS_TOPIC, alert_events, order_events, publish
from tests.integration.support import eventually

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
E2E_DATABASE = f"eldercare_e2e_{os.getpid()}"
PARTITIONS = 4
CATEGORIES = ["extreme_poverty_centralised", "extreme_poverty_dispersed", "minimum_allowance", "low_income",
              "severe_disability", "dementia", "family_planning_special"]
LIVING = ["alone", "empty_nest", "with_family", "institution"]
FACILITY_TYPES = ["county_special_care", "street_center", "daycare_center", "township_home", "happiness_home"]
RESIDENTS_PER_COUNTY = 8

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------ the platform under test


def _recreate_database(server_url: str, name: str, create: bool = True) -> str:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            if create:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())
    return with_database(server_url, name)


def _create_topics(bootstrap: str) -> None:
    from shared.messaging.kafka import ensure_topics, wait_for_broker
    from shared.messaging.topics import all_topic_names

    async def run() -> None:
        await wait_for_broker(bootstrap, timeout=30)
        await ensure_topics(bootstrap, all_topic_names(), PARTITIONS, 1)

    asyncio.run(run())


class Service:
    """One `eldercare serve <name>` process, logging to a file."""

    def __init__(self, name: str, port: int, env: dict, log_dir: Path) -> None:
        self.name, self.port = name, port
        self.log = log_dir / f"{name}.log"
        with self.log.open("wb") as logfile:
            self.process = subprocess.Popen([sys.executable, "-m", "eldercare.cli", "serve", name], cwd=ROOT,
                                            env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, deadline: float) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the {self.name} service exited with code {self.process.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            eventually(ready, max(deadline - time.monotonic(), 0), 0.25, f"the {self.name} service ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def require_chromium() -> str:
    """Debian's chromium: the test fails (never skips) without it, before anything is started."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is not installed ({CHROMIUM} is missing): run "
                    "`apt-get update && apt-get install -y --no-install-recommends chromium` "
                    "(the Makefile's test-tools target does it)", pytrace=False)
    return CHROMIUM


@contextmanager
def run_platform(pg_server_url: str, private_broker, tmp_path: Path):
    """Registry and reporting as real processes on free ports, on their own database and broker."""
    from shared.settings import PlatformSettings

    database_url = _recreate_database(pg_server_url, E2E_DATABASE)
    _create_topics(private_broker.bootstrap)
    settings = PlatformSettings(database_url=database_url, kafka_bootstrap_servers=private_broker.bootstrap,
                                log_json=False, relay_check_interval_s=0.5, kafka_partitions=PARTITIONS,
                                jwt_secret=secrets.token_urlsafe(48))
    ports = {"registry": free_port(), "reporting": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
    env.update(DATABASE_URL=database_url, KAFKA_BOOTSTRAP_SERVERS=private_broker.bootstrap,
               REGISTRY_PORT=str(ports["registry"]), REPORTING_PORT=str(ports["reporting"]),
               RELAY_CHECK_INTERVAL_S="0.5", LOG_JSON="false", KAFKA_PARTITIONS=str(PARTITIONS),
               RUN_WORKERS_IN_API="true", SERVICE_HOST="127.0.0.1", JWT_SECRET=settings.jwt_secret,
               PYTHONUNBUFFERED="1")
    services: dict[str, Service] = {}
    try:
        for name, port in ports.items():
            services[name] = Service(name, port, env, tmp_path)
        deadline = time.monotonic() + 60
        for service in services.values():
            service.wait_ready(deadline)
        yield settings, services["registry"], services["reporting"]
    finally:
        for service in services.values():
            service.stop()
        try:
            _recreate_database(pg_server_url, E2E_DATABASE, create=False)
        except Exception:  # noqa: BLE001 - tidying only
            pass


# ------------------------------------------------------------------ data


def cloud_event(type_: str, data: dict, county: str, subject: str | None = None) -> dict:
    event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"county/{county}", "type": type_,
             "countycode": county, "data": data}
    if subject:
        event["subject"] = subject
    return event


def register(client: httpx.Client, settings, county: str, rng: random.Random, name: str = "测试老人",
             township: str | None = None) -> str:
    township = township or TOWNSHIPS[county][rng.randrange(len(TOWNSHIPS[county]))]
    categories = rng.sample(CATEGORIES, rng.choice([0, 0, 1, 1, 2]))
    if {"extreme_poverty_centralised", "extreme_poverty_dispersed"} <= set(categories):
        categories.remove("extreme_poverty_dispersed")  # one or the other, never both
    body = {"name": name, "id_number": fresh_id_number(), "county_code": county, "township": township,
            "village": "东街社区", "living_arrangement": rng.choice(LIVING),
            "categories": categories,
            "ability_level": rng.choice([0, 0, 0, 1, 1, 2, 3, 4, None]),
            "family_doctor_contract": rng.random() < 0.65}
    response = client.post("/v1/residents", json=body, headers=token_for(settings, "county", county))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def post_events(client: httpx.Client, settings, county: str, events: list[dict]) -> None:
    response = client.post("/v1/events", json=events, headers=token_for(settings, "county", county))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events), response.text


def seed(client: httpx.Client, settings) -> dict:
    """A small city: residents in every county, some family beds, facilities and training."""
    rng = random.Random(2022)
    expected = {"registered": 0, "family_beds": 0, "trainees": 0, "facilities": 0}
    for index, county in enumerate(load_counties()):
        ids = [register(client, settings, county, rng) for _ in range(RESIDENTS_PER_COUNTY)]
        expected["registered"] += len(ids)
        events = [cloud_event("eldercare.county.family_bed.established.v1", {}, county, subject=rid)
                  for rid in ids[: 2 + index % 3]]
        expected["family_beds"] += len(events)
        for n, facility_type in enumerate(FACILITY_TYPES):
            how_many = rng.randrange(2, 6) if facility_type == "happiness_home" else rng.randrange(0, 3)
            for k in range(how_many):
                beds = 1 if facility_type == "county_special_care" else rng.randrange(0, 2)
                events.append(cloud_event("eldercare.county.facility.reported.v1", {
                    "facility_id": f"E2E-{county}-{n}-{k}", "facility_type": facility_type,
                    "name": f"{facility_type}-{k}", "beds": beds,
                    "nursing_beds": min(beds, rng.randrange(0, 2)), "occupied": 0}, county))
                expected["facilities"] += 1
        trainees = rng.randrange(60, 400)
        events.append(cloud_event("eldercare.county.training.recorded.v1",
                                  {"course": "养老护理员培训", "trainees": trainees}, county))
        expected["trainees"] += trainees
        post_events(client, settings, county, events)
    return expected


def publish_now(bootstrap: str, topic: str, events: list) -> None:
    """Publish from a thread of its own: Playwright's sync API runs an event loop in this one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(publish(bootstrap, topic, events))).result()


def seed_services(bootstrap: str) -> dict:
    """Orders and alerts in a few counties, published as the orders and alerts services would (valid
    events on this test's own broker)."""
    rng = random.Random(12)
    orders, alerts = [], []
    for county in list(load_counties())[:4]:
        for n in range(4):
            outcome = ["completed", "completed", "cancelled", "open"][n]
            orders.append(order_events(county, rng.choice(["meal", "bathing", "home_doctor_visit", "recreation"]),
                                       rng.randrange(20, 900), check_in_min=rng.randrange(0, 25), outcome=outcome,
                                       evv=rng.choice(["verified", "verified", "exception"]),
                                       rating=rng.randrange(3, 6), funding=(3000, 500, 100, 1400)))
        for _ in range(3):
            ack = rng.choice([8, 35, 70, 200, None])
            alerts.append(alert_events(county, ack, None if ack is None else ack + rng.randrange(60, 1800),
                                       escalated=ack is None or ack > 60))
    publish_now(bootstrap, ORDERS_TOPIC, [(oid, e) for oid, events in orders for e in events])
    publish_now(bootstrap, ALERTS_TOPIC, [(aid, e) for aid, events in alerts for e in events])
    return {"orders": len(orders), "alerts": len(alerts)}


def check_services_panel(page, aggregates: dict, targets: dict) -> None:
    """The services panel shows the API's order and alert figures, for the city and every county."""
    scopes = aggregates["scopes"]
    city_o, city_a = scopes["city"]["orders"], scopes["city"]["alerts"]
    assert city_o["placed"] > 0 and city_a["alerts"] > 0
    assert page.inner_text("#h-services span") == "居家养老服务订单与告警响应"
    codes = [r["county_code"] for r in targets["rows"]]
    assert page.evaluate("document.querySelectorAll('#services-rows tr').length") == len(codes)
    for code in codes:
        o, a = scopes[code]["orders"], scopes[code]["alerts"]
        pairs = {"placed": o["placed"], "completion": o["completion_rate"], "accept-median": o["accept_seconds_median"],
                 "on-time": o["on_time_check_in_share"], "evv": o["evv_verification_rate"],
                 "rating": o["rating_mean"], "subsidy": o["subsidy"]["subsidy_fen"], "alerts": a["alerts"],
                 "within-60": a["acked_within_60s"], "within-180": a["acked_within_180s"],
                 "ack-median": a["ack_seconds_median"], "ack-p90": a["ack_seconds_p90"],
                 "resolve-median": a["resolve_seconds_median"], "resolve-p90": a["resolve_seconds_p90"],
                 "escalations": a["escalations"], "open": a["open"]}
        for key, value in pairs.items():
            shown = as_number(figure(page, f"svc-{code}-{key}"))
            assert shown == value, (code, key, shown, value)
    for source, fen in city_o["subsidy"]["spend_fen"].items():
        assert int(figure(page, f"svc-headline-spend-{source}")) == fen
    for category, n in city_o["by_category"].items():
        assert int(figure(page, f"svc-headline-category-{category}")) == n
    headlines = {"placed": city_o["placed"], "completion": city_o["completion_rate"],
                 "accept-median": city_o["accept_seconds_median"], "on-time": city_o["on_time_check_in_share"],
                 "evv": city_o["evv_verification_rate"], "rating": city_o["rating_mean"],
                 "subsidy": city_o["subsidy"]["subsidy_fen"], "alerts": city_a["alerts"],
                 "within-60": city_a["acked_within_60s"], "within-180": city_a["acked_within_180s"],
                 "ack-median": city_a["ack_seconds_median"], "ack-p90": city_a["ack_seconds_p90"],
                 "resolve-median": city_a["resolve_seconds_median"], "resolve-p90": city_a["resolve_seconds_p90"],
                 "escalations": city_a["escalations"], "open": city_a["open"]}
    for key, value in headlines.items():
        assert as_number(figure(page, f"svc-headline-{key}")) == value, (key, value)
    ids = page.evaluate("[...document.querySelectorAll('#services-panel [data-testid]')].map(e => e.dataset.testid)")
    assert len(ids) == len(set(ids)), "a test id twice in the services panel"
    # the figure as shown: 60 s as a share with one decimal
    shown = page.inner_text('[data-testid="svc-headline-within-60"]')
    assert shown == f"{city_a['acked_within_60s'] * 100:.1f}%", shown


# ------------------------------------------------------------------ the page


def launch_chromium(playwright, executable: str):
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


def figure(page, testid: str) -> str:
    value = page.get_attribute(f'[data-testid="{testid}"]', "data-value")
    assert value is not None, f"no data-value on {testid}"
    return value


def as_number(text: str):
    return None if text == "" else float(text)


def test_dashboard_shows_the_api_figures_and_updates_live(pg_server_url, private_broker, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = require_chromium()
    started = time.monotonic()
    with run_platform(pg_server_url, private_broker, tmp_path) as (settings, registry, reporting):
        print(f"\nregistry and reporting ready in {time.monotonic() - started:.1f}s")
        drive_the_page(chromium, settings, registry, reporting, sync_playwright)


def drive_the_page(chromium: str, settings, registry: Service, reporting: Service, sync_playwright) -> None:
    viewer = token_for(settings, "viewer")
    raw_token = viewer["Authorization"].removeprefix("Bearer ")
    started = time.monotonic()

    with ExitStack() as stack:
        api = stack.enter_context(httpx.Client(base_url=reporting.url, headers=viewer, timeout=10))
        reg = stack.enter_context(httpx.Client(base_url=registry.url, timeout=10))
        expected = seed(reg, settings)

        def folded():
            city = api.get("/v1/aggregates").json()["scopes"]["city"]
            facilities = sum(v["count"] for v in city["facilities"]["by_type"].values())
            got = {"registered": city["residents"]["registered"], "family_beds": city["family_beds"],
                   "trainees": city["training"]["trainees"], "facilities": facilities}
            return got if got == expected else None

        eventually(folded, 60, 0.25, "reporting folds the seeded events (consumer group join included)")
        services_expected = seed_services(settings.kafka_bootstrap_servers)

        def services_folded():
            city = api.get("/v1/aggregates").json()["scopes"]["city"]
            got = {"orders": city["orders"]["placed"], "alerts": city["alerts"]["alerts"] + city["alerts"]["silenced"]}
            return got if got == services_expected else None

        eventually(services_folded, 60, 0.25, "reporting folds the orders and alerts topics")
        print(f"seeded and folded in {time.monotonic() - started:.1f}s")

        playwright = stack.enter_context(sync_playwright())
        browser = launch_chromium(playwright, chromium)
        stack.callback(browser.close)
        context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN",
                                      timezone_id="Asia/Shanghai", reduced_motion="reduce")
        page = context.new_page()
        problems: list[str] = []
        elsewhere: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}")
                if r.status >= 400 else None)
        page.on("request", lambda r: None if r.url.startswith((reporting.url, "data:", "blob:"))
                else elsewhere.append(r.url))

        # ---- loads with the token from the address, which it then keeps and strips
        page.goto(f"{reporting.url}/?token={raw_token}")
        assert page.url == f"{reporting.url}/", "the token must be stripped from the address bar"
        assert page.evaluate("localStorage.getItem('eldercare.dashboard.token')") == raw_token
        page.wait_for_selector('[data-testid="conn-status"][data-state="connected"]', timeout=15000)
        page.wait_for_function("document.querySelectorAll('#county-rows tr').length === 10", timeout=15000)
        assert page.evaluate("typeof window.Plotly") == "object", "plotly.js did not load from /static"

        # ---- the figures are the API's (once the page has the latest seq)
        def settled():
            aggregates = api.get("/v1/aggregates").json()
            targets = api.get("/v1/targets").json()
            shown = figure(page, "live-seq")
            if shown == str(aggregates["seq"]) == str(targets["seq"]):
                return aggregates, targets
            return None

        aggregates, targets = eventually(settled, 30, 0.25, "the page shows the API's latest seq")
        city = aggregates["scopes"]["city"]
        residents = city["residents"]
        rows = {r["county_code"]: r for r in targets["rows"]}
        ind = rows["city"]["indicators"]
        assert int(figure(page, "headline-registered")) == residents["registered"] == expected["registered"]
        assert int(figure(page, "headline-active")) == residents["active"]
        assert int(figure(page, "headline-elderly")) == residents["elderly_60plus"]
        assert int(figure(page, "headline-advanced-age")) == residents["advanced_age_80plus"]
        assert int(figure(page, "headline-centenarians")) == residents["centenarians"]
        assert int(figure(page, "headline-elderly-task")) == rows["city"]["elderly_60plus"]["task_list"]
        assert int(figure(page, "headline-family-beds")) == city["family_beds"]
        assert city["family_beds"] == ind["family_beds"]["actual"] == expected["family_beds"]
        assert int(figure(page, "headline-family-beds-target")) == ind["family_beds"]["target"]
        assert as_number(figure(page, "headline-beds-per-1000")) == ind["beds_per_1000"]["actual"]
        assert as_number(figure(page, "headline-nursing-share")) == ind["nursing_bed_share"]["actual"]
        assert int(figure(page, "headline-training")) == city["training"]["trainees"]
        assert city["training"]["trainees"] == expected["trainees"]
        assert int(figure(page, "headline-training-target")) == ind["training"]["target"]
        for code, row in rows.items():
            ri = row["indicators"]
            assert int(figure(page, f"county-{code}-elderly-registry")) == row["elderly_60plus"]["registry"]
            assert int(figure(page, f"county-{code}-elderly-task")) == row["elderly_60plus"]["task_list"]
            assert int(figure(page, f"county-{code}-family-beds")) == ri["family_beds"]["actual"]
            assert int(figure(page, f"county-{code}-family-beds-target")) == ri["family_beds"]["target"]
            assert int(figure(page, f"county-{code}-training")) == ri["training"]["actual"]
            assert int(figure(page, f"county-{code}-training-target")) == ri["training"]["target"]
            assert as_number(figure(page, f"county-{code}-beds-per-1000")) == ri["beds_per_1000"]["actual"]
            doctor = aggregates["scopes"][code]["family_doctor"]  # the share of 65+ elders with a contract
            assert as_number(figure(page, f"county-{code}-family-doctor")) == doctor["share_65plus"]
            nursing = ri["nursing_bed_share"]["actual"]
            assert as_number(figure(page, f"county-{code}-nursing-share")) == nursing
            assert int(figure(page, f"county-{code}-facilities")) == sum(
                ri[f"facilities_{t}"]["actual"] for t in FACILITY_TYPES)
            if code != "city":  # when the county platform was last heard from, and whether that is within 24 h
                heard = page.locator(f'[data-testid="county-{code}-platform-heard"]')
                assert heard.get_attribute("data-value") == (ri["smart_platform"]["last_heard_at"] or "")
                assert heard.get_attribute("data-live") == str(ri["smart_platform"]["actual"] >= 1).lower()
        assert int(figure(page, "headline-family-beds-live")) == ind["family_beds"]["live_requirement"]
        assert ind["family_beds"]["target"] == 4800  # the task list's, not the registry's
        assert page.inner_text('[data-testid="county-410928-name"]') == rows["410928"]["name_zh"] == "濮阳县"
        assert page.inner_text("h1") == "濮阳市智慧养老指挥中心"
        # every chart drawn: age bands, gender, categories per county, ability levels, facilities
        assert page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length") >= 5
        assert page.evaluate("document.querySelectorAll('#chart-age .bars .point').length") == 9
        assert page.evaluate("document.querySelectorAll('#chart-categories .barlayer .trace').length") == 7

        check_services_panel(page, aggregates, targets)

        # a county row selects that county for the ability and facility charts
        page.click('[data-testid="county-row-410928"]')
        assert page.inner_text('[data-testid="ability-scope"]') == "濮阳县"
        page.click('[data-testid="county-row-410928"]')
        assert page.inner_text('[data-testid="ability-scope"]') == "濮阳市"

        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / "dashboard.png"))
        page.locator('[data-testid="services-panel"]').screenshot(path=str(DOCS / "dashboard-services.png"))

        # ---- a county row drills down to the county's townships (the API's figures), live, and back
        assert city["family_doctor"]["contracted"] > 0
        page.click('[data-testid="county-410928-drill"]')
        page.wait_for_selector('[data-testid="township-view"]:not([hidden])', timeout=5000)
        assert page.is_hidden('[data-testid="county-view"]')
        assert page.inner_text('[data-testid="township-county"]') == "濮阳县"
        assert page.inner_text('[data-testid="ability-scope"]') == "濮阳县"  # the charts follow the county

        def township_rows() -> list[dict]:
            return page.evaluate("""() => [...document.querySelectorAll('#township-rows tr')].map(tr => {
                const v = (id) => tr.querySelector(`[data-testid="${id}"]`).dataset.value;
                return { name: tr.dataset.name, registered: Number(v('township-registered')),
                         active: Number(v('township-active')), elderly: Number(v('township-elderly')),
                         advanced: Number(v('township-advanced-age')), family_beds: Number(v('township-family-beds')),
                         contracted: Number(v('township-family-doctor-contracted')),
                         elders65: Number(v('township-family-doctor-elderly')), share: v('township-family-doctor') };
              })""")

        def api_rows() -> list[dict]:
            return [{"name": t["name"], "registered": t["residents"]["registered"], "active": t["residents"]["active"],
                     "elderly": t["residents"]["elderly_60plus"], "advanced": t["residents"]["advanced_age_80plus"],
                     "family_beds": t["family_beds"], "contracted": t["family_doctor"]["contracted_65plus"],
                     "elders65": t["family_doctor"]["elderly_65plus"],
                     "share": "" if t["family_doctor"]["share_65plus"] is None else str(t["family_doctor"]["share_65plus"])}
                    for t in api.get("/v1/aggregates/counties/410928/townships").json()["townships"]]

        expected_towns = api_rows()
        page.wait_for_function("n => document.querySelectorAll('#township-rows tr').length === n",
                               arg=len(expected_towns), timeout=10000)
        shown = township_rows()
        for row in shown:  # the page writes 0.5 as "0.5", Python too; compare numbers as numbers
            row["share"] = "" if row["share"] == "" else str(float(row["share"]))
        assert shown == expected_towns
        assert [r["name"] for r in shown] == TOWNSHIPS["410928"]
        assert sum(r["registered"] for r in shown) == aggregates["scopes"]["410928"]["residents"]["registered"]
        assert sum(r["contracted"] for r in shown) == aggregates["scopes"]["410928"]["family_doctor"]["contracted_65plus"]
        assert int(figure(page, "township-count")) == len(TOWNSHIPS["410928"])
        page.screenshot(path=str(DOCS / "dashboard-townships.png"))
        # a resident registered in one township shows there, without a reload
        first = TOWNSHIPS["410928"][0]
        before_first = next(r for r in shown if r["name"] == first)
        register(reg, settings, "410928", random.Random(7), name="吴秀兰", township=first)
        page.wait_for_function(
            """([name, n]) => Number(document.querySelector(`#township-rows tr[data-name="${name}"] `
                 + '[data-testid="township-registered"]').dataset.value) === n""",
            arg=[first, before_first["registered"] + 1], timeout=30000, polling=100)
        page.click('[data-testid="township-back"]')
        page.wait_for_selector('[data-testid="county-view"]:not([hidden])', timeout=5000)
        assert page.is_hidden('[data-testid="township-view"]')
        assert page.evaluate("document.querySelectorAll('#county-rows tr').length") == 10
        assert page.evaluate("document.activeElement.dataset.testid") == "county-410928-drill"
        page.click('[data-testid="county-row-410928"]')  # back to the city for the charts
        assert page.inner_text('[data-testid="ability-scope"]') == "濮阳市"

        # ---- English by the switch: every label, county names too; the choice is remembered
        page.click('[data-testid="lang-switch"]')
        assert page.get_attribute("html", "lang") == "en"
        assert page.inner_text("h1") == "Puyang Smart Elder-Care Command Centre"
        assert page.inner_text('[data-testid="county-410928-name"]') == rows["410928"]["name_en"]
        assert page.inner_text('[data-testid="county-city-name"]') == "Puyang City"
        assert page.inner_text('[data-testid="conn-status"]').strip() == "Live"
        assert page.evaluate("localStorage.getItem('eldercare.dashboard.lang')") == "en"
        labels = "h1, .subtitle, .conn, .meta, #board h2, #board h3, #board .sub, thead th, .foot"
        chinese_left = page.evaluate(r"""(labels) => [...document.querySelectorAll(labels)]
            .map(e => e.innerText).join(' ').match(/[\u4e00-\u9fff]+/g)""", labels)
        assert not chinese_left, f"labels still in Chinese after the switch: {chinese_left}"
        page.screenshot(path=str(DOCS / "dashboard-en.png"))
        panel_words = page.evaluate(r"""(labels) => [...document.querySelectorAll(labels)]
            .map(e => e.innerText).join(' ').match(/[\u4e00-\u9fff]+/g)""",
            "#services-panel h2, #services-panel h3, #services-panel .sub, #services-panel th")
        assert not panel_words, f"services panel labels still in Chinese after the switch: {panel_words}"

        # ---- a new resident and a training event change the page without a reload
        page.evaluate("window.__e2eMark = 'same page'")
        watched = ("headline-registered", "headline-training", "county-410928-training",
                   "county-410928-elderly-registry")
        before = {k: int(figure(page, k)) for k in watched}
        deltas_before = page.evaluate("window.__dashboard.deltas")
        fetches_before = page.evaluate("window.__dashboard.fetches")
        rng = random.Random()
        register(reg, settings, "410928", rng, name="周秀珍")
        post_events(reg, settings, "410928", [cloud_event("eldercare.county.training.recorded.v1",
                                                           {"course": "失智照护", "trainees": 40}, "410928")])
        changed_at = time.monotonic()
        page.wait_for_function(
            """([registered, training, county]) => {
                 const v = (id) => Number(document.querySelector(`[data-testid="${id}"]`).dataset.value);
                 return v('headline-registered') === registered && v('headline-training') === training
                        && v('county-410928-training') === county;
               }""",
            arg=[before["headline-registered"] + 1, before["headline-training"] + 40,
                 before["county-410928-training"] + 40],
            timeout=30000, polling=100)
        print(f"page updated {time.monotonic() - changed_at:.2f}s after the writes")
        # an order placed and an alert raised: the services panel follows without a reload
        placed, raised = int(figure(page, "svc-city-placed")), int(figure(page, "svc-city-alerts"))
        oid, events = order_events("410928", "meal", 30, check_in_min=None, outcome="placed")
        aid, alert = alert_events("410928", None, None)
        changed_at = time.monotonic()
        publish_now(settings.kafka_bootstrap_servers, ORDERS_TOPIC, [(oid, e) for e in events])
        publish_now(settings.kafka_bootstrap_servers, ALERTS_TOPIC, [(aid, e) for e in alert])
        page.wait_for_function(
            """([placed, raised]) => {
                 const v = (id) => Number(document.querySelector(`[data-testid="${id}"]`).dataset.value);
                 return v('svc-city-placed') === placed && v('svc-city-alerts') === raised
                        && v('svc-410928-open') >= 1;
               }""", arg=[placed + 1, raised + 1], timeout=30000, polling=100)
        print(f"services panel updated {time.monotonic() - changed_at:.2f}s after the events")
        assert page.evaluate("window.__e2eMark") == "same page", "the page reloaded"
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert page.evaluate("window.__dashboard.deltas") > deltas_before, \
            "the change did not come by the stream"
        fetches = page.evaluate("window.__dashboard.fetches") - fetches_before
        assert 1 <= fetches <= 4, f"{fetches} fetches for one burst of deltas"
        aggregates, _ = eventually(settled, 15, 0.25, "the page shows the API's latest seq")
        registered = aggregates["scopes"]["city"]["residents"]["registered"]
        assert int(figure(page, "headline-registered")) == registered == before["headline-registered"] + 1
        county = aggregates["scopes"]["410928"]["residents"]
        # the suite's ID numbers are of people born 1925-1964: 60 or over
        assert int(figure(page, "county-410928-elderly-registry")) == county["elderly_60plus"] == \
            before["county-410928-elderly-registry"] + 1

        # ---- no token, or a refused one: a clear message in both languages, no crash
        bare = browser.new_context(viewport={"width": 1280, "height": 800})
        stack.callback(bare.close)
        lost = bare.new_page()
        lost.on("pageerror", lambda error: problems.append(f"page error (no token): {error}"))
        lost.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}")
                if r.status >= 400 and r.status not in (401, 403) else None)
        lost.goto(f"{reporting.url}/")
        lost.wait_for_selector('[data-testid="notice"]:not([hidden])', timeout=10000)
        assert "make up" in lost.inner_text('[data-testid="notice-zh"]')
        assert "make up" in lost.inner_text('[data-testid="notice-en"]')
        lost.goto(f"{reporting.url}/?token=not-a-token")
        lost.wait_for_selector('[data-testid="notice"][data-kind="denied"]:not([hidden])', timeout=10000)
        assert "401" in lost.inner_text('[data-testid="notice-en"]')
        assert lost.evaluate("localStorage.getItem('eldercare.dashboard.token')") is None

        assert not elsewhere, f"the page fetched from elsewhere than the service: {elsewhere}"
        problems = [p for p in problems if "status of 401" not in p]  # the refused token's own request
        assert not problems, problems
    print(f"browser part done in {time.monotonic() - started:.1f}s")
