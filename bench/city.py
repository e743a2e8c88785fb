"""The whole platform under the city simulator: the four services as processes on the bench's
database and broker, a synthetic city imported through the registry, then `eldercare simulate`'s
actors (every user, eldercare/city.py) at increasing device-event rates until a latency target
breaks. The sustained rate is the highest load at which the registry's gateway answered its
batches with p99 under the target, took at least 90 % of what was offered, and no call met a 5xx
or no answer. Per level: p50/p99 of each service's answers (the chart's lines)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from rich.console import Console

from bench.common import STATE, ServiceProcess, percentile
from eldercare.infra import free_port

console = Console()
SERVICES = ("registry", "orders", "alerts", "reporting")


def level_passes(level: dict, target_ms: float) -> bool:
    return (level["registry"]["p99_ms"] is not None and level["registry"]["p99_ms"] <= target_ms
            and level["achieved_events_per_s"] >= 0.9 * level["offered_events_per_s"]
            and not level["failures"])


def _latencies(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    return {"n": len(samples), "p50_ms": round(percentile(samples, 50), 1), "p99_ms": round(percentile(samples, 99), 1)}


async def bench_city(url: str, bootstrap: str, residents: int, levels: list[float], seconds: float,
                     target_ms: float = 1000.0, compression: float = 1440.0) -> dict:
    from eldercare.city import CitySimulation
    from eldercare.seeding import seed_registry
    from eldercare.simulator import events_per_county
    from shared.settings import PlatformSettings

    ports = {name: free_port() for name in SERVICES}
    extra = {f"{name.upper()}_PORT": str(port) for name, port in ports.items()}
    extra.update(REGISTRY_WORKERS="1", SERVICE_HOST="127.0.0.1", RELAY_CHECK_INTERVAL_S="0.5")
    processes = [ServiceProcess(name, url, bootstrap, ports[name], extra_env=extra) for name in SERVICES]
    result: dict = {"residents": residents, "seconds_per_level": seconds, "target_p99_ms": target_ms,
                    "compression": compression, "levels": []}
    try:
        for process in processes:
            await asyncio.to_thread(process.wait_ready)
        console.print(f"City: importing {residents:,} residents through the registry (setup)…")
        state = STATE / "bench-city"
        state.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(seed_registry, url, state, residents=residents, seed=14)
        await asyncio.sleep(5)  # the relay publishes the city; orders and alerts learn it
        settings = PlatformSettings(database_url=url, kafka_bootstrap_servers=bootstrap, service_host="127.0.0.1",
                                    jwt_secret=os.environ["JWT_SECRET"],
                                    **{f"{name}_port": port for name, port in ports.items()})
        city = CitySimulation(settings, events_per_s=levels[0], seed=14, compression=compression,
                              orders_per_day=levels[0] / 50 * 86400 / compression, ack_median_s=2.0, operator_pace=0.05, sample_size=200)
        await city.start()
        for offered in levels:
            city.county.rates = events_per_county(offered, city.county.counties)
            if city.orders is not None:  # an order a second for every 50 events a second
                city.orders.orders_per_day = offered / 50 * 86400 / compression
            city.tally.latency_ms.clear()
            unexpected_before = dict(city.tally.unexpected_by)
            accepted_before = city.county.accepted
            started = last = time.monotonic()
            while time.monotonic() - started < seconds:
                now = time.monotonic()
                await city.tick(now - last)
                last = now
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
            elapsed = time.monotonic() - started
            failures = {k: v - unexpected_before.get(k, 0) for k, v in city.tally.unexpected_by.items()
                        if k != "refused" and v - unexpected_before.get(k, 0)}
            level = {"offered_events_per_s": offered,
                     "achieved_events_per_s": round((city.county.accepted - accepted_before) / elapsed),
                     "orders_started": city.orders.placed if city.orders else 0,
                     "failures": failures,
                     **{name: _latencies(city.tally.latency_ms.get(name, [])) for name in ("registry", "orders",
                                                                                           "alerts")}}
            level["passed"] = level_passes(level, target_ms)
            result["levels"].append(level)
            console.print(f"  {offered:,.0f} events/s offered: {level}")
            if not level["passed"]:
                break
        if city.orders is not None:
            await city.orders.drain(0)
        if city.operators is not None:
            await city.operators.drain(0)
        for client in city.clients.values():
            await client.aclose()
    finally:
        for process in processes:
            process.stop()
    passed = [lv["offered_events_per_s"] for lv in result["levels"] if lv["passed"]]
    result["sustained_events_per_s"] = max(passed) if passed else 0
    return result


def chart(levels: list[dict], path: Path, title: str) -> Path:
    """p99 latency of each service's answers against the offered load (matplotlib, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    loads = [lv["offered_events_per_s"] for lv in levels]
    for (name, label), colour in zip((("registry", "registry: gateway batch"), ("orders", "orders: API call"),
                                      ("alerts", "alerts: API call")), ("tab:blue", "tab:green", "tab:purple")):
        for quantile, style in (("p99", "-"), ("p50", "--")):
            points = [(x, lv[name][f"{quantile}_ms"]) for x, lv in zip(loads, levels)
                      if lv[name][f"{quantile}_ms"] is not None]
            if points:
                ax.plot(*zip(*points), marker="o" if quantile == "p99" else ".", linestyle=style, color=colour,
                        alpha=1.0 if quantile == "p99" else 0.6, label=f"{label}, {quantile}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("device events/s offered by the simulator (with orders and operators in proportion)")
    ax.set_ylabel("answer time (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
