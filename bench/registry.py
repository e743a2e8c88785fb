"""`eldercare bench registry`: the registry's bulk import against the raw limit of the same database,
measured in the same run.

Import: the synthetic city's CSV (`eldercare seed`'s file) through `run_import` on an empty registry
schema: parsing, validation, staging COPY, upsert, one event per resident into the outbox, the error
report and the job's counters. Raw: `copy_records_to_table` of the same rows, already parsed and
validated (not timed), into a table of the same shape and indexes (`LIKE residents INCLUDING ALL`).

Each measurement gets a fresh schema and a CHECKPOINT first, so neither inherits the other's dirty
pages. More measurements of the registry (lookups, search, ingest) add a `bench_*` function each and a
line to `_run`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import STATE, bench_infrastructure, median
from eldercare.seeding import DEFAULT_SEED, dataset_path, write_dataset
from services.registry.domain.imports import RowChecker
from services.registry.importer import (
    CHUNK_ROWS, RESIDENT_COLUMNS, ImportFile, create_job, file_sha256, resident_record, run_import,
    uuid_stream,
)
from shared.db import connect
from shared.migrations import upgrade_async
from shared.regions import load_counties

console = Console()


async def _fresh_registry(url: str) -> None:
    conn = await connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS registry CASCADE")
    finally:
        await conn.close()
    await upgrade_async("registry", url)


async def _checkpoint(conn) -> None:
    try:
        await conn.execute("CHECKPOINT")
    except Exception:  # noqa: BLE001 - needs superuser or pg_checkpoint; the figures are then noisier
        pass


def load_records(path: Path) -> list[tuple]:
    """The file's rows parsed and validated as the importer would, shaped for the residents table."""
    imported = ImportFile(path)
    checker = RowChecker(imported.headers, frozenset(load_counties()), None, date.today(),
                         new_id=uuid_stream())
    records: list[tuple] = []
    gc.disable()  # a list of 700k tuples of lists: the cyclic collector would rescan it on every growth
    try:
        for chunk in imported.chunks(checker, CHUNK_ROWS):
            records.extend(resident_record(r) for r in chunk.records)
    finally:
        gc.enable()
        imported.close()
    gc.freeze()
    return records


async def raw_copy(url: str, records: list[tuple]) -> float:
    """Rows/s of one copy_records_to_table into a same-shaped, same-indexed table."""
    conn = await connect(url, "registry")
    try:
        await conn.execute("DROP TABLE IF EXISTS raw_residents")
        await conn.execute("CREATE TABLE raw_residents (LIKE residents INCLUDING ALL)")
        await _checkpoint(conn)
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("raw_residents", records=records, columns=RESIDENT_COLUMNS)
        rate = len(records) / (time.perf_counter() - started)
        await conn.execute("DROP TABLE raw_residents")
        return rate
    finally:
        await conn.close()


async def timed_import(url: str, path: Path) -> tuple[float, dict]:
    """Rows/s of the registry's import of `path` on an empty registry, and the job's outcome."""
    conn = await connect(url, "registry")
    try:
        job_id = await create_job(conn, actor="bench", county_code=None, filename=path.name,
                                  sha256=file_sha256(path))
        await _checkpoint(conn)
        started = time.perf_counter()
        outcome = await run_import(conn, job_id, path, scope_county=None)
        seconds = time.perf_counter() - started
        if outcome["status"] != "succeeded":
            raise RuntimeError(f"the import failed: {outcome.get('error')}")
        events = await conn.fetchval("SELECT count(*) FROM outbox")
        outcome["events"] = events
        return outcome["processed"] / seconds, outcome
    finally:
        await conn.close()


async def bench_import(url: str, path: Path, runs: int = 3, records: list[tuple] | None = None) -> dict:
    """Import vs raw COPY of the same rows, `runs` times each on a fresh schema; medians and their ratio."""
    records = records if records is not None else await asyncio.to_thread(load_records, path)
    raw_rates: list[float] = []
    import_rates: list[float] = []
    outcome: dict = {}
    for run in range(runs):
        await _fresh_registry(url)
        raw_rates.append(await raw_copy(url, records))
        await _fresh_registry(url)
        rate, outcome = await timed_import(url, path)
        import_rates.append(rate)
        console.print(f"run {run + 1}/{runs}: import {rate:,.0f} rows/s, raw COPY {raw_rates[-1]:,.0f} "
                      f"rows/s ({rate / raw_rates[-1]:.2f}); {outcome['accepted']:,} registered, "
                      f"{outcome['events']:,} events, {outcome['rejected']:,} rejected")
    imp, raw = median(import_rates), median(raw_rates)
    return {"rows": len(records), "runs": runs, "import_rows_per_s": imp, "raw_copy_rows_per_s": raw,
            "ratio": imp / raw, "import_runs": import_rates, "raw_runs": raw_rates,
            "accepted": outcome.get("accepted"), "events": outcome.get("events")}


async def _server_version(url: str) -> str:
    conn = await connect(url)
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


def main(rows: int = 700_000, runs: int = 3, seed: int = DEFAULT_SEED, url: str | None = None) -> dict:
    """Run the registry benchmark on a fresh database (embedded PostgreSQL unless DATABASE_URL is set),
    or on `url`'s (an empty database a caller's `bench_infrastructure` gave)."""
    path = dataset_path(STATE, rows, seed)
    if not path.exists():
        console.print(f"generating the synthetic city ({rows:,} rows) into {path}…")
        write_dataset(path, rows, seed)
    if url is not None:
        return asyncio.run(_run(url, path, runs))
    with bench_infrastructure() as (url, _bootstrap):
        return asyncio.run(_run(url, path, runs))


async def _run(url: str, path: Path, runs: int) -> dict:
    result = {"import": await bench_import(url, path, runs)}
    conditions = (f"{os.cpu_count()} CPUs, PostgreSQL {await _server_version(url)}, "
                  f"Python {platform.python_version()}, {platform.machine()}")
    result["conditions"] = conditions
    imp = result["import"]
    table = Table(title=f"registry import, {imp['rows']:,} rows (synthetic city CSV), median of {runs}; "
                        f"{conditions}")
    table.add_column("measure")
    table.add_column("rows/s", justify="right")
    table.add_column("vs raw", justify="right")
    table.add_row("raw asyncpg copy_records_to_table (same rows, same indexes)",
                  f"{imp['raw_copy_rows_per_s']:,.0f}", "1.00")
    table.add_row("import: CSV parse + validation + upsert + events + counters",
                  f"{imp['import_rows_per_s']:,.0f}", f"{imp['ratio']:.2f}")
    console.print(table)
    return result
