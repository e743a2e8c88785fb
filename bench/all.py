"""`eldercare bench all`: every service's benchmark, PostgreSQL recovery and the whole platform
under the city simulator, in one run on one database server (each part on a fresh database and,
unless KAFKA_BOOTSTRAP_SERVERS names one, a fresh embedded broker), then the figures section of docs/benchmarks.md rewritten from the run — each figure
with its conditions and, measured in the same run, the raw limit it is compared with — and a chart
of answer time against load per service (docs/bench-city-latency.png). The hand-written sections
of docs/benchmarks.md are kept: only the text between the two markers is replaced.

`--quick` runs every part small (under 5 minutes on two cores) for a first look; its figures say
so."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

console = Console()
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BEGIN = "<!-- eldercare bench all: begin (generated; the text up to the end marker is rewritten by each run) -->"
END = "<!-- eldercare bench all: end -->"
CHART = "bench-city-latency.png"

# What each part is given: quick (a first look) and full (the figures to quote).
SIZES = {
    "quick": {"backbone": {"events": 5_000, "runs": 1},
              "registry_import": {"rows": 20_000, "runs": 1},
              "registry_api": {"residents": 3_000, "rate": 100, "seconds": 2, "ingest_batches": 20},
              "orders": {"residents": 1_000, "rate": 50, "seconds": 3},
              "alerts": {"residents": 1_000, "readings": 10_000, "rate": 100, "seconds": 4},
              "reporting": {"residents": 10_000, "rate": 200, "seconds": 4},
              "pg_recovery": {"runs": 1},
              "city": {"residents": 2_000, "levels": [50, 200, 800], "seconds": 6}},
    "full": {"backbone": {"events": 50_000, "runs": 3},
             "registry_import": {"rows": 700_000, "runs": 3},
             "registry_api": {"residents": 700_000, "rate": 1000, "seconds": 10, "ingest_batches": 200},
             "orders": {"residents": 20_000, "rate": 1000, "seconds": 10},
             "alerts": {"residents": 20_000, "readings": 300_000, "rate": 5000, "seconds": 20},
             "reporting": {"residents": 700_000, "rate": 5000, "seconds": 10},
             "pg_recovery": {"runs": 3},
             "city": {"residents": 50_000, "levels": [100, 200, 400, 800, 1600, 3200, 6400], "seconds": 20}},
}
PARTS = tuple(SIZES["quick"])


def run_all(quick: bool = False, parts: tuple[str, ...] = PARTS, docs: Path = DOCS) -> dict:
    """Run the parts, write the section and the chart; returns every figure."""
    from bench.common import bench_infrastructure, fresh_database, part_broker

    mode = "quick" if quick else "full"
    sizes = SIZES[mode]
    results: dict = {"mode": mode, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "conditions": conditions(), "parts": {}, "seconds": {}}
    with bench_infrastructure(broker_per_part=True) as (url, named_broker):
        for part in parts:
            console.rule(f"bench all ({mode}): {part}")
            fresh_database(url)
            started = time.monotonic()
            with part_broker(named_broker) as bootstrap:
                results["parts"][part] = _run_part(part, sizes[part], url, bootstrap)
            results["seconds"][part] = round(time.monotonic() - started, 1)
        results["conditions"]["postgresql"] = asyncio.run(_server_version(url))
    results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if "city" in results["parts"]:
        from bench.city import chart

        chart(results["parts"]["city"]["levels"], docs / CHART,
              f"eldercare bench all{' --quick' if quick else ''}, {results['finished_at'][:16]} UTC: "
              "answer time against load")
    write_section(docs / "benchmarks.md", render(results))
    return results


def _run_part(part: str, size: dict, url: str, bootstrap: str) -> dict:
    if part == "backbone":
        from bench.backbone import _run

        return asyncio.run(_run(url, bootstrap, size["events"], size["runs"]))
    if part == "registry_import":
        from bench.registry import main
        from shared.process import tune_process

        tune_process("registry")
        return main(rows=size["rows"], runs=size["runs"], url=url)
    if part == "registry_api":
        from bench.registry_api import bench_registry_api

        return asyncio.run(bench_registry_api(url, bootstrap, size["residents"], size["rate"], size["seconds"],
                                              ingest_batches=size["ingest_batches"]))
    if part == "orders":
        from bench.orders import bench_orders

        return asyncio.run(bench_orders(url, bootstrap, size["residents"], size["rate"], size["seconds"]))
    if part == "alerts":
        from bench.alerts import bench_alerts

        return asyncio.run(bench_alerts(url, bootstrap, size["residents"], size["readings"], size["rate"],
                                        size["seconds"], "all"))
    if part == "reporting":
        from bench.reporting import bench_reporting

        return asyncio.run(bench_reporting(url, bootstrap, size["residents"], size["rate"], size["seconds"]))
    if part == "pg_recovery":
        from bench.pg_recovery import main

        return main(runs=size["runs"])
    if part == "city":
        from bench.city import bench_city

        return asyncio.run(bench_city(url, bootstrap, size["residents"], size["levels"], size["seconds"]))
    raise ValueError(f"unknown part {part!r}")


def conditions() -> dict:
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "load_average_1m_at_start": None if load is None else round(load, 2)}


async def _server_version(url: str) -> str:
    import asyncpg

    from shared.db import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


# ------------------------------------------------------------------ the figures as markdown


def _n(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(value, raw) -> str:
    return f"{value / raw:.2f}" if value and raw else "—"


def rows(results: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(part, measure, figure, raw limit in the same run, ratio, conditions) for every figure."""
    p, out = results["parts"], []
    sizes = SIZES[results["mode"]]
    if b := p.get("backbone"):
        cond = f"{b['events']:,} events of ~450 B, 8 partitions, median of {b['runs']}"
        out.append(("backbone", "outbox relay (read, publish, mark), events/s", _n(b["relay_per_s"]),
                    f"raw aiokafka send() {_n(b['raw_produce_per_s'])}", _ratio(b["relay_per_s"], b["raw_produce_per_s"]),
                    cond))
        out.append(("backbone", "idempotent consumer (inbox + insert), events/s", _n(b["consumer_per_s"]),
                    f"raw getmany {_n(b['raw_consume_per_s'])}", _ratio(b["consumer_per_s"], b["raw_consume_per_s"]),
                    cond))
    if r := p.get("registry_import"):
        imp = r["import"]
        out.append(("registry", "import (parse, validate, COPY, events), rows/s", _n(imp["import_rows_per_s"]),
                    f"raw COPY {_n(imp['raw_copy_rows_per_s'])}", f"{imp['ratio']:.2f}",
                    f"{imp['rows']:,} rows of the synthetic city, median of {imp['runs']}"))
    if r := p.get("registry_api"):
        n = sizes["registry_api"]["residents"]
        for name, label in (("get_by_id", "GET by id"), ("id_number_lookup", "ID-number lookup"),
                            ("filtered_search", "filtered search")):
            if x := r["reads"].get(name):
                out.append(("registry", f"{label}: p50 / p99 ms at {x['rate_per_s']:g}/s (open loop)",
                            f"{_n(x['p50_ms'], 1)} / {_n(x['p99_ms'], 1)}", "—", "—",
                            f"{n:,} residents, {sizes['registry_api']['seconds']} s, {x['errors']} errors"))
        ing = r["ingest"]
        out.append(("registry", "ingest gateway, events/s accepted (batches of 500, 4 callers)",
                    _n(ing["accepted_per_s"]), "—", "—",
                    f"{ing['events']:,} events; batch p99 {_n(ing['batch']['p99_ms'], 0)} ms"))
    if o := p.get("orders"):
        cap, ol = o["placed"]["capacity"], o["placed"]["open_loop"]
        out.append(("orders", "orders placed/s (16 callers, closed loop)", _n(cap["orders_per_s"]),
                    f"raw INSERT/transaction {_n(o['raw_inserts_per_s'])}", _ratio(cap["orders_per_s"],
                                                                                    o["raw_inserts_per_s"]),
                    f"{sizes['orders']['residents']:,} residents; p99 {_n(cap['p99_ms'], 0)} ms"))
        out.append(("orders", f"place order: p50 / p99 ms at {ol['rate_per_s']:g}/s (open loop)",
                    f"{_n(ol['p50_ms'], 1)} / {_n(ol['p99_ms'], 1)}", "—", "—",
                    f"{ol['seconds']:g} s, {ol['errors']} errors; reconciled: {o['checks'].get('unbalanced_orders', '?')} "
                    "unbalanced"))
    if a := p.get("alerts"):
        t, lat = a.get("throughput"), a.get("latency")
        if t:
            out.append(("alerts", "readings evaluated/s", _n(t["evaluated_per_s"]), f"raw getmany {_n(t['raw_getmany_per_s'])}",
                        f"{t['evaluated_vs_raw']:.2f}", f"{t['readings']:,} readings, {t['residents']:,} residents"))
        if lat:
            out.append(("alerts", "SOS gateway → alert stream: p50 / p99 ms", f"{_n(lat['p50_ms'], 0)} / {_n(lat['p99_ms'], 0)}",
                        "—", "—", f"{lat['sos']} SOS, background {lat['background_achieved_per_s']:,}/s "
                                  f"(asked {lat['background_target_per_s']:,}), {lat['missing']} missing"))
    if r := p.get("reporting"):
        out.append(("reporting", "events folded/s (first fold)", _n(r.get("fold_events_per_s")),
                    f"raw getmany {_n(r['raw_getmany_per_s'])}", _ratio(r.get("fold_events_per_s"), r["raw_getmany_per_s"]),
                    f"{r['residents']:,} registered events"))
        out.append(("reporting", "replay (rebuild) of the history, s", _n(r.get("replay_seconds"), 1), "—", "—",
                    f"{r['residents']:,} events"))
        if s := r.get("stream"):
            out.append(("reporting", "gateway → dashboard stream: p50 / p99 ms", f"{_n(s['p50_ms'], 0)} / {_n(s['p99_ms'], 0)}",
                        "—", "—", f"{s['achieved_events_per_s']:,} events/s (asked {s['target_events_per_s']:,})"))
    if g := p.get("pg_recovery"):
        for outage, med in g.items():
            out.append(("PostgreSQL", f"{outage}: registry serving again / reporting caught up, s",
                        f"{_n(med['registry_s'], 2)} / {_n(med['consistent_s'], 2)}", "—", "—",
                        f"after PostgreSQL's start ({_n(med['start_s'], 2)} s); median of {sizes['pg_recovery']['runs']}"))
    if c := p.get("city"):
        ingest = (p.get("registry_api") or {}).get("ingest", {}).get("accepted_per_s")
        last = next((lv for lv in reversed(c["levels"]) if lv["passed"]), None)
        out.append(("platform", "sustained device events/s, the whole city simulated",
                    _n(c["sustained_events_per_s"]), f"ingest gateway alone {_n(ingest)}",
                    _ratio(c["sustained_events_per_s"], ingest),
                    f"levels {', '.join(_n(lv['offered_events_per_s']) for lv in c['levels'])}; "
                    f"target: gateway batch p99 ≤ {c['target_p99_ms']:g} ms, ≥ 90 % taken, no 5xx; "
                    f"{c['residents']:,} residents, {c['seconds_per_level']:g} s a level"))
        if last:
            for name in ("registry", "orders", "alerts"):
                x = last[name]
                if not x["n"]:
                    continue  # no such call at that level (e.g. no alert came up to answer)
                out.append(("platform", f"{name} answers at {_n(last['offered_events_per_s'])} events/s: p50 / p99 ms",
                            f"{_n(x['p50_ms'], 1)} / {_n(x['p99_ms'], 1)}", "—", "—", f"{x['n']:,} answers"))
    return out


def render(results: dict) -> str:
    cond = results["conditions"]
    mode = "`eldercare bench all --quick` (small sizes: a first look, not figures to quote)" \
        if results["mode"] == "quick" else "`eldercare bench all`"
    lines = [BEGIN, "", "## Latest run of every benchmark", "",
             f"{mode}, {results['started_at']} → {results['finished_at']}; {cond['cpus']} CPUs ({cond['machine']}), "
             f"load average {cond['load_average_1m_at_start']} at the start, PostgreSQL {cond.get('postgresql', '?')}, "
             f"Python {cond['python']}, embedded Tansu broker unless KAFKA_BOOTSTRAP_SERVERS was set. Each part on "
             "a fresh database and a fresh broker (the embedded one keeps every record in memory); the raw limits were "
             "measured in the same part on the same server and broker. "
             "Seconds per part: " + ", ".join(f"{k} {v:g}" for k, v in results["seconds"].items()) + ".", "",
             "| part | measure | figure | raw limit, same run | vs raw | conditions |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {' | '.join(r)} |" for r in rows(results)]
    if "city" in results["parts"]:
        lines += ["", f"![answer time against load per service]({CHART})", "",
                  f"`{CHART}`: p50 and p99 of each service's answers to the simulator's calls at each load "
                  "level (device events/s; orders and duty operators in proportion)."]
    lines += ["", END]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the generated section (or put it after the introduction, before the first `## `)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        at = text.find("\n## ")
        text = (text + "\n\n" + section + "\n") if at < 0 else (text[:at + 1] + section + "\n\n" + text[at + 1:])
    path.write_text(text, encoding="utf-8")
