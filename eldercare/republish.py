"""`eldercare republish registry`: start a re-publish job on the running registry and follow it
until its events are on the broker (job succeeded, the registry's outbox drained)."""

from __future__ import annotations

import time

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.auth import Role, issue_token
from shared.settings import PlatformSettings

console = Console()


def city_headers(settings: PlatformSettings, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, Role.CITY, subject=subject, ttl_seconds=3600)}"}


def republish_registry(settings: PlatformSettings, base_url: str | None = None, sources: list[str] | None = None,
                       chunk_size: int = 1000, timeout: float = 3600, quiet: bool = False) -> dict:
    """Run a job to the end; returns its last status (raises TimeoutError past `timeout`)."""
    base = base_url or f"http://{settings.service_host}:{settings.registry_port}"
    body: dict = {"chunk_size": chunk_size}
    if sources:
        body["sources"] = sources
    with httpx.Client(base_url=base, headers=city_headers(settings, "cli:republish"), timeout=60) as client:
        started = client.post("/v1/admin/republish", json=body)
        started.raise_for_status()
        job = started.json()
        deadline = time.monotonic() + timeout
        with Progress(TextColumn("re-publishing {task.fields[source]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("outbox {task.fields[unpublished]:,}"), TimeElapsedColumn(), console=console,
                      disable=quiet) as progress:
            task = progress.add_task("republish", total=job["total"] or None, source=job["source"] or "",
                                     unpublished=0)
            while time.monotonic() < deadline:
                status = client.get(f"/v1/admin/republish/{job['id']}").json()
                progress.update(task, completed=status["emitted"], total=status["total"] or None,
                                source=status["source"] or "done", unpublished=status["unpublished"])
                if status["status"] == "failed":
                    raise RuntimeError(f"re-publish job {job['id']} failed: {status['error']}")
                if status["status"] == "succeeded" and status["unpublished"] == 0:
                    return status
                time.sleep(0.25)
    raise TimeoutError(f"re-publish job {job['id']} did not finish in {timeout:.0f}s")
