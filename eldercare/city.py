"""`eldercare simulate`: the whole city at once — the eight county platforms posting to the
registry's gateway (eldercare/simulator.py), the offices, providers and caregivers working orders
and the duty operators answering alerts (eldercare/actors.py), on one calendar
(eldercare/calendar.py), with a live table of what was sent and what came back per kind."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from eldercare.actors import OUTCOMES, DutyOperators, OrdersActors, Tally
from eldercare.calendar import CITY_TZ, SimClock
from eldercare.simulator import CountySimulator
from shared.settings import PlatformSettings

log = logging.getLogger(__name__)

OUTCOME_LABELS = {"ok": "accepted", "refused": "refused (named)", "caught": "mistakes caught",
                  "same": "retries, same answer", "retried": "tried again (no answer, 503)",
                  "unexpected": "unexpected"}


def progress_table(tally: Tally, clock: SimClock, elapsed: float, extra: dict) -> Table:
    table = Table(title=f"Puyang, simulated {clock.label()} — {elapsed:,.0f} s real", title_justify="left",
                  caption=" · ".join(f"{k} {v:,}" for k, v in extra.items()), caption_justify="left")
    table.add_column("kind")
    for outcome in OUTCOMES:
        table.add_column(OUTCOME_LABELS[outcome], justify="right")
    for kind, counts in sorted(tally.rows.items()):
        cells = [f"{counts[o]:,}" if counts[o] else "" for o in OUTCOMES]
        if counts["unexpected"]:
            cells[-1] = f"[red]{cells[-1]}[/]"
        table.add_row(kind, *cells)
    return table


def progress_line(tally: Tally, clock: SimClock, elapsed: float, extra: dict) -> str:
    totals = " ".join(f"{OUTCOME_LABELS[o]}={tally.total(o):,}" for o in OUTCOMES)
    return f"simulated {clock.label()} after {elapsed:,.0f} s: {totals}; " + \
        ", ".join(f"{k} {v:,}" for k, v in extra.items())


class CitySimulation:
    """Everyone at once, ticking every second."""

    def __init__(self, settings: PlatformSettings, *, events_per_s: float, seed: int, compression: float = 1.0,
                 orders_per_day: float = 2000.0, ack_median_s: float = 20.0, operator_pace: float = 1.0,
                 sample_size: int = 500, start: datetime | None = None, orders: bool = True,
                 operators: bool = True, alarm_share: float = 0.001, mistake_share: float = 0.002,
                 order_mistake_share: float = 0.03) -> None:
        self.settings, self.seed = settings, seed
        self.tally = Tally()
        self.clock = SimClock(compression, start)
        host = settings.service_host
        limits = httpx.Limits(max_connections=40, max_keepalive_connections=20)
        self.clients = {name: httpx.AsyncClient(base_url=f"http://{host}:{settings.port_of(name)}", timeout=30,
                                                limits=limits) for name in ("registry", "orders", "alerts")}
        self.county = CountySimulator(settings, self.clients["registry"], events_per_s=events_per_s, seed=seed,
                                      sample_size=sample_size, clock=self.clock, tally=self.tally,
                                      alarm_share=alarm_share, mistake_share=mistake_share)
        self.want_orders, self.want_operators = orders, operators
        self.order_mistake_share = order_mistake_share
        self.orders_per_day, self.ack_median_s, self.operator_pace = orders_per_day, ack_median_s, operator_pace
        self.orders: OrdersActors | None = None
        self.operators: DutyOperators | None = None
        self.started = time.monotonic()
        self.day_over: str | None = None

    async def start(self) -> None:
        await self.county.start()
        weights = {c.code: c.elderly_60plus for c in self.county.counties}
        if self.want_orders and self.orders_per_day > 0:
            self.orders = OrdersActors(self.settings, self.clients["orders"], self.tally, self.clock, seed=self.seed,
                                       orders_per_day=self.orders_per_day, residents=self.county.homes,
                                       county_weights=weights, mistake_share=self.order_mistake_share)
            try:
                await self.orders.setup()
            except httpx.HTTPError as exc:
                log.warning("simulator: orders is not answering (%s); no orders this run", exc)
                self.orders = None
        if self.want_operators:
            self.operators = DutyOperators(self.settings, self.clients["alerts"], self.tally, seed=self.seed,
                                           counties=[c.code for c in self.county.counties],
                                           ack_median_s=self.ack_median_s, pace=self.operator_pace)

    def extra(self) -> dict:
        out = {"orders placed": self.orders.placed if self.orders else 0,
               "orders open": len(self.orders.tasks) if self.orders else 0,
               "alerts taken up": self.operators.handled if self.operators else 0,
               "alarms sent": self.county.taken["device.sos"] + self.county.taken["device.fall"]}
        return out

    async def tick(self, seconds: float) -> None:
        try:
            await self.county.tick(seconds)
        except httpx.HTTPError as exc:  # the registry restarting: carry on next second
            self.tally.unexpected("gateway", f"{type(exc).__name__}: {exc}",
                                  "unavailable" if isinstance(exc, httpx.HTTPStatusError) else "transport")
        if self.orders is not None:
            self.orders.tick(seconds)
        if self.operators is not None:
            await self.operators.poll()

    async def run(self, seconds: float | None, drain_s: float = 30.0, live: bool | None = None,
                  line_every_s: float = 15.0) -> dict:
        console = Console()
        live = console.is_terminal if live is None else live
        await self.start()
        self.clock.restart()
        self.started = time.monotonic()
        deadline = None if seconds is None else self.started + seconds
        last = time.monotonic()
        last_line = 0.0
        display = Live(console=console, refresh_per_second=2, transient=False) if live else None
        try:
            if display is not None:
                display.start()
            while deadline is None or time.monotonic() < deadline:
                now = time.monotonic()
                await self.tick(now - last)
                last = now
                elapsed = now - self.started
                if display is not None:
                    display.update(progress_table(self.tally, self.clock, elapsed, self.extra()))
                elif now - last_line >= line_every_s:
                    print(progress_line(self.tally, self.clock, elapsed, self.extra()), flush=True)
                    last_line = now
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
            # The day is over: nothing new, the stories under way are finished.
            self.day_over = self.clock.label()
            drain_deadline = time.monotonic() + drain_s
            while time.monotonic() < drain_deadline and ((self.orders and self.orders.tasks)
                                                         or (self.operators and self.operators.tasks)):
                if self.operators is not None:
                    await self.operators.poll()
                await asyncio.sleep(1.0)
            if self.orders is not None:
                await self.orders.drain(0)
            if self.operators is not None:
                await self.operators.drain(0)
        finally:
            if display is not None:
                display.update(progress_table(self.tally, self.clock, time.monotonic() - self.started, self.extra()))
                display.stop()
            for client in self.clients.values():
                await client.aclose()
        return self.summary()

    def summary(self) -> dict:
        return {
            "clock": self.day_over or self.clock.label(), "compression": self.clock.compression,
            "real_seconds": round(time.monotonic() - self.started, 1),
            "accepted": self.county.accepted, "rejected": self.county.rejected,
            "events_sent": dict(self.county.sent), "events_accepted": dict(self.county.taken),
            "calls": self.tally.as_dict(),
            "unexpected": dict(self.tally.unexpected_by), "problems": self.tally.problems,
            "refusals": [{"kind": k, "status": s, "field": f, "count": n}
                         for (k, s, f), n in sorted(self.tally.refusals.items())],
            "orders": {"placed": self.orders.placed if self.orders else 0,
                       "stories": dict(self.orders.final) if self.orders else {},
                       "last_seen_state": dict(self.orders.orders) if self.orders else {}},
            "alerts": {"taken_up": self.operators.handled if self.operators else 0,
                       "outcomes": dict(self.operators.outcomes) if self.operators else {}},
        }


async def simulate(settings: PlatformSettings, *, events_per_s: float, seconds: float | None, seed: int,
                   compression: float = 1.0, orders_per_day: float = 2000.0, ack_median_s: float = 20.0,
                   operator_pace: float = 1.0, sample_size: int = 500, start_hour: float | None = None,
                   drain_s: float = 30.0, summary_path: Path | None = None, live: bool | None = None,
                   alarm_share: float = 0.001, mistake_share: float = 0.002,
                   order_mistake_share: float = 0.03) -> dict:
    """Run the whole city against the services at their configured addresses."""
    start = None
    if start_hour is not None:
        today = datetime.now(CITY_TZ).replace(minute=0, second=0, microsecond=0)
        start = today.replace(hour=int(start_hour) % 24, minute=int(start_hour % 1 * 60))
    city = CitySimulation(settings, events_per_s=events_per_s, seed=seed, compression=compression,
                          orders_per_day=orders_per_day, ack_median_s=ack_median_s, operator_pace=operator_pace,
                          sample_size=sample_size, start=start, alarm_share=alarm_share,
                          mistake_share=mistake_share, order_mistake_share=order_mistake_share)
    task = asyncio.ensure_future(city.run(seconds, drain_s=drain_s, live=live))
    try:
        summary = await task
    except asyncio.CancelledError:
        summary = city.summary()
    if summary_path is not None:
        summary_path.write_text(json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    return summary


def counts_line(summary: dict) -> str:
    unexpected = sum(summary["unexpected"].values())
    stories = Counter(summary["orders"]["stories"])
    return (f"posted: {summary['accepted']:,} accepted, {summary['rejected']:,} rejected; "
            f"orders: {summary['orders']['placed']:,} placed, {stories.get('rated', 0) + stories.get('completed', 0):,} "
            f"done; alerts answered: {summary['alerts']['outcomes'].get('resolved', 0):,}; "
            f"unexpected answers: {unexpected:,} {summary['unexpected'] or ''}")
