"""`eldercare replay reporting`: rebuild reporting's aggregates from the event log through the
running service, then check the figures are exactly what they were. When the broker's log cannot
hold what reporting has folded (lost, trimmed by retention or compaction), the registry
re-publishes its current state first (eldercare/republish.py), so the rebuild has every resident."""

from __future__ import annotations

import time

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from eldercare.republish import city_headers, republish_registry
from shared.messaging.topics import RESIDENTS
from shared.settings import PlatformSettings

console = Console()


def figures(snapshot: dict) -> dict:
    """The comparable part of /v1/aggregates (the sequence number moves on by design)."""
    return {scope: {k: v for k, v in view.items() if k != "as_of"} for scope, view in snapshot["scopes"].items()}


def diff(before: dict, after: dict, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after)):
            out += diff(before.get(key), after.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if before == after else [f"{path}: {before} → {after}"]


def registry_residents(stats: dict) -> int:
    """Every resident the registry holds (any status), from /v1/stats/residents."""
    return sum(stats["counts"].get("city", {}).get("status", {}).values())


def short_log_reason(log: dict, residents: int) -> str | None:
    """Why the residents topic cannot give a rebuild every resident (None: it can). Each resident
    has at least one record there while the log is whole, so fewer records than residents, or a log
    that no longer starts at offset 0 (lost, trimmed by retention, compacted), means some are
    missing. (Pure. A false alarm only costs a re-publish, which changes no figure; Tansu answers an
    end offset below the last record's, so on the embedded broker a whole log can look a few records
    short.)"""
    reason = _short(log, residents)
    return f"the broker's log is short: {reason}" if reason else None


def _short(log: dict, residents: int) -> str | None:
    topic = log["topics"].get(RESIDENTS.name)
    if topic is None:
        return f"reporting reads no partition of {RESIDENTS.name}"
    if not topic["starts_at_zero"]:
        return f"{RESIDENTS.name} no longer starts at offset 0 (retention or compaction removed its beginning)"
    if topic["records"] < residents:
        return f"{RESIDENTS.name} holds {topic['records']:,} records for the registry's {residents:,} residents"
    return None


def _wait_caught_up(client: httpx.Client, started: float, timeout: float) -> None:
    with Progress(TextColumn("rebuilding reporting"), BarColumn(), TextColumn("{task.completed:,} events"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("rebuild", total=None)
        stable_since = None
        while time.monotonic() - started < timeout:
            status = client.get("/v1/admin/rebuild").json()
            progress.update(task, completed=status["applied"])
            if status["lag"] == 0:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since > 1.0:
                    return
            else:
                stable_since = None
            time.sleep(0.25)


def _log_extent(client: httpx.Client, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/v1/admin/log")
        if response.status_code != 503 or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()
        time.sleep(1.0)


def replay_reporting(settings: PlatformSettings, base_url: str | None = None, timeout: float = 600,
                     registry_url: str | None = None, republish: str = "auto") -> bool:
    """`republish`: auto (when the log is short), always, or never."""
    base = base_url or f"http://{settings.service_host}:{settings.reporting_port}"
    registry_base = registry_url or f"http://{settings.service_host}:{settings.registry_port}"
    headers = city_headers(settings, "cli:replay")
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client, \
            httpx.Client(base_url=registry_base, headers=headers, timeout=120) as registry:
        before = client.get("/v1/aggregates")
        before.raise_for_status()
        expected = before.json()["scopes"]["city"]["residents"]["registered"]
        stats = registry.get("/v1/stats/residents")
        stats.raise_for_status()
        residents = registry_residents(stats.json())
        started = time.monotonic()
        reason = "asked for (--republish always)" if republish == "always" else \
            None if republish == "never" else short_log_reason(_log_extent(client), residents)
        republished = reason is not None
        if republished:
            console.print(f"Re-publishing the registry's state first: {reason}.")
            republish_registry(settings, registry_base, timeout=timeout)
        client.post("/v1/admin/rebuild").raise_for_status()
        _wait_caught_up(client, started, timeout)
        after = client.get("/v1/aggregates").json()
        if republish == "auto" and not republished and after["scopes"]["city"]["residents"]["registered"] < residents:
            console.print("The rebuild found fewer residents than the registry holds; re-publishing its state.")
            republish_registry(settings, registry_base, timeout=timeout)
            _wait_caught_up(client, time.monotonic(), timeout)
            after = client.get("/v1/aggregates").json()
        seconds = time.monotonic() - started
    differences = diff(figures(before.json()), figures(after))
    console.print(f"Rebuilt in {seconds:.1f}s; registered residents before {expected:,}, after "
                  f"{after['scopes']['city']['residents']['registered']:,} (registry: {residents:,}).")
    if differences:
        console.print(f"[red]{len(differences)} figures differ[/] (events that arrived during the rebuild also "
                      "show here):")
        for line in differences[:30]:
            console.print(f"  {line}")
        return False
    console.print("[green]Every figure is exactly the same.[/]")
    return True
