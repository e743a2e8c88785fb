"""`eldercare replay reporting`: rebuild reporting's aggregates from the event log through the
running service, then check the figures are exactly what they were."""

from __future__ import annotations

import time

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shared.auth import Role, issue_token
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


def replay_reporting(settings: PlatformSettings, base_url: str | None = None, timeout: float = 600) -> bool:
    base = base_url or f"http://{settings.service_host}:{settings.reporting_port}"
    headers = {"Authorization": f"Bearer {issue_token(settings, Role.CITY, subject='cli:replay', ttl_seconds=3600)}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        before = client.get("/v1/aggregates")
        before.raise_for_status()
        started = time.monotonic()
        client.post("/v1/admin/rebuild").raise_for_status()
        expected = before.json()["scopes"]["city"]["residents"]["registered"]
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
                        break
                else:
                    stable_since = None
                time.sleep(0.25)
        seconds = time.monotonic() - started
        after = client.get("/v1/aggregates").json()
    differences = diff(figures(before.json()), figures(after))
    console.print(f"Rebuilt in {seconds:.1f}s; registered residents before {expected:,}, after "
                  f"{after['scopes']['city']['residents']['registered']:,}.")
    if differences:
        console.print(f"[red]{len(differences)} figures differ[/] (events that arrived during the rebuild also "
                      "show here):")
        for line in differences[:30]:
            console.print(f"  {line}")
        return False
    console.print("[green]Every figure is exactly the same.[/]")
    return True
