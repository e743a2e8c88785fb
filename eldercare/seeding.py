"""Seeding the synthetic city (SPEC §4) through the registry's import path: `eldercare seed`, and once
on a platform's first start.

The generator streams into a CSV under the state folder (the county import template, kept for the
next seed and the benchmark), which is then imported in this process by the registry's own
`run_import`, as a city-wide job: the same validation, the same events in the registry's outbox, which
the registry service's relay publishes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

from shared.settings import PlatformSettings

DEFAULT_RESIDENTS = 700_000
DEFAULT_SEED = 42
SEED_ACTOR = "eldercare seed"

console = Console(stderr=True)


# Bumped when the generated columns change, so a file kept from an older version is not reused
# (v2: home locations; v3: family-doctor contracts).
DATASET_VERSION = 3


def dataset_path(state_dir: Path, residents: int, seed: int) -> Path:
    return Path(state_dir) / "seed" / f"synthetic-city-{residents}-seed{seed}-v{DATASET_VERSION}.csv"


def write_dataset(path: Path, residents: int, seed: int, on_rows: Callable[[int], Any] | None = None) -> Path:
    """Generate the synthetic city into `path` (streamed: no list of 700k rows); an existing file made
    with the same count and seed is the same file and is kept."""
    from eldercare.synthetic import generate_residents, write_csv

    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        if on_rows is not None:
            on_rows(residents)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    rows: Iterable[dict] = generate_residents(residents, seed=seed)
    if on_rows is not None:
        rows = _counted(rows, on_rows)
    write_csv(rows, partial)
    partial.replace(path)  # only a complete file carries the final name
    return path


def _counted(rows: Iterable[dict], on_rows: Callable[[int], Any], every: int = 10_000) -> Iterator[dict]:
    n = 0
    for row in rows:
        yield row
        n += 1
        if n % every == 0:
            on_rows(n)
    on_rows(n)


async def prepare_database(database_url: str) -> None:
    """The database and the registry's schema, for a seed run before (or without) the services."""
    from shared.db import ensure_database
    from shared.migrations import upgrade_async

    await ensure_database(database_url)
    await upgrade_async("registry", database_url)


async def import_dataset(database_url: str, path: Path, *, actor: str = SEED_ACTOR,
                         on_progress: Callable[[dict], Any] | None = None, migrate: bool = True) -> dict:
    """Import a CSV as a city-wide job through the registry's importer; returns the job's outcome."""
    from services.registry.importer import create_job, file_sha256, refresh_visibility, run_import
    from shared.db import connect

    if migrate:
        await prepare_database(database_url)
    sha256 = await asyncio.to_thread(file_sha256, path)
    conn = await connect(database_url, "registry")
    try:
        job_id = await create_job(conn, actor=actor, county_code=None, filename=Path(path).name,
                                  sha256=sha256)
        outcome = await run_import(conn, job_id, Path(path), scope_county=None, on_progress=on_progress)
        if outcome["status"] == "succeeded":
            await refresh_visibility(conn)
        return outcome
    finally:
        await conn.close()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def seed_registry(database_url: str, state_dir: Path, *, residents: int = DEFAULT_RESIDENTS,
                  seed: int = DEFAULT_SEED, csv_path: Path | None = None) -> dict:
    """Generate (or reuse) the synthetic city's CSV and import it, with progress bars. Raises RuntimeError
    when the import job fails."""
    path = Path(csv_path) if csv_path else dataset_path(state_dir, residents, seed)
    with _progress() as progress:
        generating = progress.add_task("generating residents", total=residents, rate="")
        started = time.monotonic()

        def generated(n: int) -> None:
            rate = n / max(time.monotonic() - started, 1e-6)
            progress.update(generating, completed=n, rate=f"{rate:,.0f} rows/s")

        if csv_path is None or not path.exists():
            write_dataset(path, residents, seed, generated)
        else:
            generated(residents)
        asyncio.run(prepare_database(database_url))
        importing = progress.add_task("importing (registry)", total=residents, rate="")
        import_started = time.monotonic()

        def imported(counts: dict) -> None:
            rate = counts["processed"] / max(time.monotonic() - import_started, 1e-6)
            progress.update(importing, completed=counts["processed"], total=counts["total_rows"],
                            rate=f"{rate:,.0f} rows/s")

        outcome = asyncio.run(import_dataset(database_url, path, on_progress=imported, migrate=False))
    seconds = time.monotonic() - import_started
    outcome["seconds"] = round(seconds, 1)
    outcome["csv"] = str(path)
    if outcome["status"] != "succeeded":
        raise RuntimeError(f"seeding failed: {outcome.get('error')}")
    console.print(
        f"Seeded the registry from [bold]{path}[/]: {outcome['accepted']:,} registered, "
        f"{outcome['updated']:,} updated, {outcome['unchanged']:,} unchanged, "
        f"{outcome['rejected']:,} rejected "
        f"({outcome['processed'] / max(seconds, 1e-6):,.0f} rows/s); the registry's relay publishes the "
        "events.")
    return outcome


def seed_on_first_start(settings: PlatformSettings, infra, state_dir: Path) -> None:
    """Seed once per state folder; a marker file, written only after success, records that it was done.
    A failure is reported and leaves the platform running unseeded (the next start tries again)."""
    marker = state_dir / "seeded"
    if marker.exists():
        return
    # SEED_RESIDENTS (PlatformSettings.seed_residents); 0 skips seeding.
    residents = settings.seed_residents
    if residents <= 0:
        return
    console.print(f"First start: seeding the registry with the synthetic city ({residents:,} residents)…")
    try:
        outcome = seed_registry(infra.database_url, state_dir, residents=residents, seed=DEFAULT_SEED)
    except Exception as exc:  # noqa: BLE001 - the platform is still useful unseeded
        console.print(f"[red]Seeding failed: {exc}[/]. The platform runs without the synthetic city; "
                      "run [bold]eldercare seed[/] to try again.")
        return
    marker.write_text(f"{outcome['processed']} residents from {outcome['csv']}\n")
