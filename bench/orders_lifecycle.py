"""`eldercare bench orders --part lifecycle`: N orders driven through their whole lifecycle, then the
money reconciled to the fen.

Each order takes the steps a real one takes, one transaction each, through the orders service's own
use cases (services/orders/handlers.py: what every API route calls, minus HTTP, tokens and the
idempotency table): placed (eligibility, capacity, policy, caps, budgets, split, outbox) by a county
operator, accepted and assigned by its provider, checked in and out by the caregiver at the home
(EVV facts, geofence, duration, one caregiver in two places), exceptions explained and confirmed by
the county, some rated; others rejected, cancelled after acceptance, or left for the scheduler to
expire (never accepted) or mark no-show (never checked in). Time is simulated: every visit has its
own slot of its caregiver's day, so nothing overlaps that should not.

Then the reconciliation, all exact integer fen:
- every order's 政府/集体/社会/个人 shares add up to its price;
- each county's budget spent per month and source equals the shares of the orders still holding
  them (ended orders gave theirs back), and never exceeds that county's budget (three counties get
  small budgets so that they run out during the run and the personal share takes over);
- each resident's entitlement use equals its orders' use and stays within the caps;
- the monthly statements (handlers.settlement, what GET /v1/settlements answers) list exactly the
  payable orders (completed or rated, verified or confirmed), and their totals per source equal the
  orders' sums; one settled event per payable order is in the outbox.

The raw limit, in the same run on the same database: asyncpg alone writing the same number of
transactions per order (one INSERT of the order's final row into a copy of the table, then one
UPDATE per further step), with the same number of concurrent connections."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
from rich.console import Console

from bench.common import summarize_latencies
from shared.db import _init_connection, asyncpg_dsn
from shared.idempotency import StoredResponse

console = Console()
ITEMS = ("cleaning", "meal", "emotional_support", "recreation", "medicine_delivery")
# Counties whose budgets are small enough to run out within the run (monthly fen per source).
TIGHT_BUDGETS = {"410927": {"government": 400_000, "collective": 60_000, "social": 30_000},
                 "410972": {"government": 150_000, "collective": 20_000, "social": 10_000},
                 "410973": {"government": 200_000, "collective": 30_000, "social": 0}}
CAREGIVERS_PER_COUNTY = 80
SLOT = timedelta(minutes=180)  # a caregiver's visits: one slot each, longer than any visit booked here


@dataclass
class Plan:
    """What happens to one order (drawn once per order from the run's seed)."""

    outcome: str            # completed, rejected, cancelled, expired, no_show
    exception: str | None   # None, "geofence" or "short"
    confirm: bool
    rate: bool


def plan_of(rng: random.Random) -> Plan:
    r = rng.random()
    outcome = ("expired" if r < 0.02 else "rejected" if r < 0.05 else "cancelled" if r < 0.08
               else "no_show" if r < 0.10 else "completed")
    e = rng.random()
    exception = ("geofence" if e < 0.035 else "short" if e < 0.07 else None) if outcome == "completed" else None
    return Plan(outcome, exception, exception is not None and rng.random() < 0.8, rng.random() < 0.3)


async def setup_parties(conn: asyncpg.Connection, counties: list[str]) -> dict[str, tuple[str, list[str]]]:
    """A provider per county offering the items, its caregivers (nurses), the tight budgets."""
    from services.orders.domain.catalog import load_menu

    parties: dict[str, tuple[str, list[str]]] = {}
    menu = {m.code: m for m in load_menu()}
    for county in counties:
        pid = f"prov-{county}-life"
        await conn.execute("INSERT INTO providers (id, name, provider_type, county_code) VALUES ($1,$2,$3,$4)",
                           pid, "综合养老服务中心", "street_centre", county)
        await conn.executemany(
            "INSERT INTO provider_items (provider_id, service_code, price_fen, daily_capacity) VALUES ($1,$2,$3,$4)",
            [(pid, code, menu[code].base_price_fen, 10_000_000) for code in ITEMS])
        caregivers = [f"cg-{county}-{i:03d}" for i in range(CAREGIVERS_PER_COUNTY)]
        await conn.executemany("INSERT INTO caregivers (id, provider_id, name, service_area) VALUES ($1,$2,$3,$4)",
                               [(c, pid, "李秀兰", []) for c in caregivers])
        await conn.executemany(
            "INSERT INTO certificates (caregiver_id, kind, level, number, expires_on) "
            "VALUES ($1,'nurse','4',$2,NULL)", [(c, f"N-{c}") for c in caregivers])
        parties[county] = (pid, caregivers)
    for county, budgets in TIGHT_BUDGETS.items():
        if county in parties:
            await conn.execute(
                "INSERT INTO policies (scope, version, effective_from, benefits, budgets, note, created_by) "
                "VALUES ($1, 1, DATE '2020-01-01', NULL, $2, 'bench: a small budget', 'bench')", county, budgets)
    return parties


class Lifecycle:
    def __init__(self, pool: asyncpg.Pool, residents: list[tuple[str, str]], parties: dict, orders: int,
                 seed: int, cfg) -> None:
        self.pool, self.residents, self.parties, self.cfg = pool, residents, parties, cfg
        self.total = orders
        self.rng = random.Random(seed)
        self.next = 0
        self.slots: dict[str, int] = defaultdict(int)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.transactions = 0
        self.retries = 0
        self.refused: dict[str, int] = defaultdict(int)
        self.base = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                                            microsecond=0)
        self.last_start = self.base

    async def _step(self, name: str, fn) -> object:
        started = time.perf_counter()
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                result = await fn(conn)
        self.latency[name].append((time.perf_counter() - started) * 1000)
        self.transactions += 1
        return result

    async def one(self, index: int) -> None:
        from services.orders import handlers
        from shared.auth import Principal, Role

        rng = random.Random(index * 7919 + 17)
        rid, county = self.residents[rng.randrange(len(self.residents))]
        pid, caregivers = self.parties[county]
        slot = self.slots[county]
        self.slots[county] += 1
        caregiver = caregivers[slot % len(caregivers)]
        start = self.base + SLOT * (slot // len(caregivers)) + timedelta(minutes=rng.randrange(0, 15))
        self.last_start = max(self.last_start, start)
        plan = plan_of(rng)
        county_op = Principal(subject=f"clerk@{county}", role=Role.COUNTY, county=county)
        provider = Principal(subject=f"desk@{pid}", role=Role.PROVIDER, provider_id=pid)
        carer = Principal(subject=caregiver, role=Role.CAREGIVER, caregiver_id=caregiver)
        # One or two items, at most two hours booked in all (a visit fits its slot with time to spare).
        first = rng.choice(ITEMS)
        items = [(first, rng.randint(1, 2))]
        if rng.random() < 0.3:
            items = [(first, 1), (rng.choice([c for c in ITEMS if c != first]), 1)]
        cmd = handlers.PlaceOrder(resident_id=uuid.UUID(rid), provider_id=pid, items=items, scheduled_start=start,
                                  channel="county_operator")

        # Placing claims an Idempotency-Key in its own statements (as the API does); the answer kept
        # for it is the placed row itself.
        claim = handlers.Claim(county_op.subject, str(uuid.uuid4()), "lifecycle-bench")

        async def place(lock: bool):
            return await self._step("place", lambda c: handlers.place_order(
                c, county_op, cmd, self.cfg, claim, lambda order, _resident: StoredResponse(201, order, {}),
                "orders", lock_budgets=lock))
        try:
            answer, _ = await place(False)
        except handlers.BudgetContended:
            self.retries += 1
            answer, _ = await place(True)
        row = answer.body
        oid = row["id"]

        def act(name, who, action, body=None, now=None):
            return self._step(name, lambda c: handlers.act(c, who, oid, action, body or {}, self.cfg, now=now))

        if plan.outcome == "expired":
            return
        if plan.outcome == "rejected":
            await act("reject", provider, "reject", {"reason": "当日人手不足"})
            return
        await act("accept", provider, "accept")
        if plan.outcome == "cancelled":
            await act("cancel", county_op, "cancel", {"reason": "老人住院,取消服务"})
            return
        await act("assign", provider, "assign", {"caregiver_id": caregiver})
        if plan.outcome == "no_show":
            return
        home_lat, home_lon = 35.76, 115.03  # the bench's projection puts every home here
        off = 0.004 if plan.exception == "geofence" else 0.0002 * rng.random()  # ~440 m, or a few metres
        minutes = row["scheduled_minutes"] * (0.3 if plan.exception == "short" else 1.0 + 0.1 * rng.random())
        check_in = start + timedelta(minutes=rng.randrange(-5, 10))
        check_out = check_in + timedelta(minutes=minutes)
        await act("check_in", carer, "check_in", {"lat": home_lat + off, "lon": home_lon, "accuracy_m": 10.0,
                                                  "time": check_in}, now=check_in)
        done = await act("check_out", carer, "check_out", {"lat": home_lat + off / 2, "lon": home_lon,
                                                           "accuracy_m": 10.0, "time": check_out}, now=check_out)
        if done[0]["evv_status"] == "exception":
            await self._step("explain", lambda c: handlers.explain_visit(c, carer, oid, "老人临时外出就医"))
            if plan.confirm:
                await self._step("confirm", lambda c: handlers.confirm_visit(
                    c, county_op, oid, "电话回访属实", now=check_out + timedelta(hours=1)))
        if plan.rate:
            await act("rate", county_op, "rate", {"rating": rng.randint(3, 5)}, now=check_out + timedelta(hours=2))

    async def worker(self) -> None:
        while self.next < self.total:
            index = self.next
            self.next += 1
            await self.one(index)

    async def scheduler(self) -> int:
        """The scheduler's timers at a time after every visit: unaccepted orders expire, assigned ones
        never checked in are no-shows (handlers.run_due, what the service's leader runs)."""
        from services.orders import handlers

        now = self.last_start + timedelta(days=1)
        total = 0
        for _ in range(self.total // 100 + 100):  # each order is stepped at most a few times
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    n = await handlers.run_due(conn, self.cfg.timers, now, 500)
            self.transactions += 1
            total += n
            if n == 0:
                return total
        raise RuntimeError("the scheduler kept finding due orders: a timer that never ends")


async def reconcile(conn: asyncpg.Connection, counties: list[str]) -> dict:
    from services.orders import handlers
    from services.orders.domain.policies import resolve
    from services.orders.domain.lifecycle import RELEASING
    from shared.auth import Principal, Role

    releasing = sorted(RELEASING)
    out: dict = {}
    out["orders"] = await conn.fetchval("SELECT count(*) FROM orders")
    out["states"] = {r["state"]: r["n"] for r in await conn.fetch(
        "SELECT state, count(*) n FROM orders GROUP BY 1 ORDER BY 1")}
    out["unbalanced_orders"] = await conn.fetchval(
        "SELECT count(*) FROM orders WHERE price_fen <> government_fen + collective_fen + social_fen + personal_fen "
        "OR least(government_fen, collective_fen, social_fen, personal_fen) < 0")
    out["budget_mismatches"] = await conn.fetchval(
        """SELECT count(*) FROM (
             SELECT county_code, month, s.source, sum(s.fen) fen FROM orders,
               LATERAL (VALUES ('government', government_fen), ('collective', collective_fen),
                               ('social', social_fen)) AS s(source, fen)
             WHERE state <> ALL($1::text[]) GROUP BY 1, 2, 3) o
           FULL JOIN budget_spend b USING (county_code, month, source)
           WHERE coalesce(o.fen, 0) <> coalesce(b.spent_fen, 0)""", releasing)
    overspent = []
    versions = {c: await handlers.policy_versions(conn, c) for c in counties}
    for b in await conn.fetch("SELECT county_code, month, source, spent_fen FROM budget_spend"):
        day = datetime.strptime(b["month"] + "-01", "%Y-%m-%d").date()
        budget = resolve(versions[b["county_code"]], b["county_code"], day).budgets.get(b["source"], 0)
        if b["spent_fen"] > budget:
            overspent.append(dict(b))
    out["budgets_overspent"] = len(overspent)
    # Where a source's budget ran out during the run (an order then got less from it, noted).
    out["budgets_run_out"] = [f"{r['county_code']}/{r['source']}: {r['n']} orders" for r in await conn.fetch(
        "SELECT county_code, split_part(n, ' ', 1) AS source, count(*) n FROM orders, unnest(subsidy_notes) n "
        "WHERE n LIKE '% budget exhausted%' GROUP BY 1, 2 ORDER BY 1, 2")]
    out["orders_with_a_source_out_of_budget"] = await conn.fetchval(
        "SELECT count(*) FROM orders WHERE EXISTS (SELECT 1 FROM unnest(subsidy_notes) n WHERE n LIKE '%budget%')")
    out["entitlement_mismatches"] = await conn.fetchval(
        """SELECT count(*) FROM (
             SELECT resident_id, month, e.key AS benefit_code, sum(e.value::bigint) fen
             FROM orders, jsonb_each_text(coalesce(entitlement_use, '{}'::jsonb)) e
             WHERE state <> ALL($1::text[]) GROUP BY 1, 2, 3) o
           FULL JOIN (SELECT * FROM entitlement_usage WHERE used_fen <> 0) u
             USING (resident_id, month, benefit_code)
           WHERE coalesce(o.fen, 0) <> coalesce(u.used_fen, 0)""", releasing)
    # The statements, as GET /v1/settlements builds them, against the orders they must list.
    city = Principal(subject="bench", role=Role.CITY)
    payable = await conn.fetchrow(
        """SELECT count(*) n, coalesce(sum(price_fen), 0) price, coalesce(sum(government_fen), 0) gov,
                  coalesce(sum(collective_fen), 0) col, coalesce(sum(social_fen), 0) soc,
                  coalesce(sum(personal_fen), 0) per FROM orders
           WHERE state IN ('completed', 'rated') AND evv_status IN ('verified', 'confirmed')""")
    not_listed = await conn.fetchval(
        "SELECT count(*) FROM orders WHERE (settlement_month IS NOT NULL) <> "
        "(state IN ('completed', 'rated') AND evv_status IN ('verified', 'confirmed'))")
    months = [r["settlement_month"] for r in await conn.fetch(
        "SELECT DISTINCT settlement_month FROM orders WHERE settlement_month IS NOT NULL")]
    sums = defaultdict(int)
    for county in counties:
        for month in months:
            doc, lines = await handlers.settlement(conn, city, county, None, month)
            for key, value in doc["totals"].items():
                sums[key] += value
            for p in doc["providers"]:
                assert p["totals"]["price_fen"] == sum(line["price_fen"] for line in p["lines"])
    statement = {"orders": sums["orders"], "price_fen": sums["price_fen"], "government_fen": sums["government_fen"],
                 "collective_fen": sums["collective_fen"], "social_fen": sums["social_fen"],
                 "personal_fen": sums["personal_fen"]}
    from_orders = {"orders": payable["n"], "price_fen": payable["price"], "government_fen": payable["gov"],
                   "collective_fen": payable["col"], "social_fen": payable["soc"], "personal_fen": payable["per"]}
    out["statement_totals"] = statement
    out["statement_equals_orders"] = statement == from_orders
    out["statement_shares_add_up"] = statement["price_fen"] == sum(
        statement[f"{s}_fen"] for s in ("government", "collective", "social", "personal"))
    out["payable_but_not_listed_or_listed_but_not_payable"] = not_listed
    out["settled_events"] = await conn.fetchval(
        "SELECT count(*) FROM outbox WHERE position('\"eldercare.order.settled.v1\"' in convert_from(payload, 'UTF8')) > 0")
    out["settled_events_equal_payable"] = out["settled_events"] == payable["n"]
    out["reconciled"] = (out["unbalanced_orders"] == 0 and out["budget_mismatches"] == 0
                         and out["budgets_overspent"] == 0 and out["entitlement_mismatches"] == 0
                         and out["statement_equals_orders"] and out["statement_shares_add_up"] and not_listed == 0
                         and out["settled_events_equal_payable"])
    return out


async def raw_lifecycle(url: str, per_order: float, sample: int, concurrency: int) -> float:
    """Orders/s of asyncpg alone doing `per_order` transactions an order: the order's final row
    INSERTed into a copy of the table, then one UPDATE per further step, each its own transaction."""
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": "orders"})
    try:
        await conn.execute("DROP TABLE IF EXISTS raw_orders")
        await conn.execute("CREATE TABLE raw_orders (LIKE orders INCLUDING ALL)")
        rows = await conn.fetch("SELECT * FROM orders ORDER BY random() LIMIT $1", sample)
        columns = list(rows[0].keys())
    finally:
        await conn.close()
    insert = (f"INSERT INTO raw_orders ({', '.join(columns)}) VALUES "
              f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))})")
    update = "UPDATE raw_orders SET version = version + 1, updated_at = now(), state = $2 WHERE id = $1"
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=concurrency, max_size=concurrency,
                                     server_settings={"search_path": "orders"}, init=_init_connection)
    queue = list(rows)
    steps = max(0, round(per_order) - 1)

    async def worker() -> None:
        async with pool.acquire() as c:
            while queue:
                row = queue.pop()
                async with c.transaction():
                    await c.execute(insert, *row.values())
                for _ in range(steps):
                    async with c.transaction():
                        await c.execute(update, row["id"], row["state"])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = len(rows) / (time.perf_counter() - started)
    await pool.close()
    return rate


async def bench_lifecycle(url: str, orders: int, residents: int, workers: int, raw_sample: int,
                          seed: int = 42) -> dict:
    from bench.orders import setup
    from services.orders.settings import OrdersSettings
    from shared.regions import load_counties

    console.print(f"Setup: orders schema, {residents:,} residents in the projection, a provider and "
                  f"{CAREGIVERS_PER_COUNTY} caregivers per county…")
    people, _ = await setup(url, residents, providers=False)
    counties = list(load_counties())
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": "orders"})
    await _init_connection(conn)
    try:
        parties = await setup_parties(conn, counties)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=workers, max_size=workers,
                                     server_settings={"search_path": "orders",
                                                      "max_parallel_workers_per_gather": "0"},
                                     init=_init_connection)
    run = Lifecycle(pool, people, parties, orders, seed, OrdersSettings(_env_file=None))
    console.print(f"Lifecycle: {orders:,} orders, {workers} concurrent callers…")
    started = time.perf_counter()

    async def progress() -> None:
        while True:
            await asyncio.sleep(30)
            elapsed = time.perf_counter() - started
            console.print(f"  … {run.next:,} orders begun in {elapsed:.0f} s ({run.next / elapsed:,.0f}/s)")

    ticker = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(run.worker() for _ in range(workers)))
    finally:
        ticker.cancel()
    lifecycle_s = time.perf_counter() - started
    timed_out = await run.scheduler()
    total_s = time.perf_counter() - started
    await pool.close()
    per_order = run.transactions / orders
    result = {
        "orders": orders, "workers": workers, "seconds": round(total_s, 1),
        "orders_per_s": round(orders / total_s, 1), "transactions": run.transactions,
        "transactions_per_order": round(per_order, 2), "transactions_per_s": round(run.transactions / total_s),
        "budget_retries": run.retries, "scheduler_orders": timed_out,
        "steps": {name: summarize_latencies(values) for name, values in sorted(run.latency.items())},
        "lifecycle_seconds": round(lifecycle_s, 1),
    }
    console.print(f"  {orders:,} orders in {total_s:,.1f} s: {result['orders_per_s']:,} orders/s, "
                  f"{result['transactions_per_s']:,} transactions/s ({per_order:.2f} an order)")
    for name, summary in result["steps"].items():
        console.print(f"    {name:10s} {summary}")
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": "orders"})
    await _init_connection(conn)
    try:
        checks = await reconcile(conn, counties)
    finally:
        await conn.close()
    console.print(f"  reconciliation: {checks}")
    raw = await raw_lifecycle(url, per_order, min(raw_sample, orders), workers)
    result.update(raw_orders_per_s=round(raw, 1), ratio_to_raw=round(orders / total_s / raw, 3), checks=checks)
    console.print(f"  raw asyncpg, {per_order:.2f} transactions an order: {raw:,.0f} orders/s; "
                  f"lifecycle/raw = {result['ratio_to_raw']}")
    return result
