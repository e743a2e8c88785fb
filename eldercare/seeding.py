"""Seeding the synthetic city on a platform's first start (the registry's import path)."""

from __future__ import annotations

from pathlib import Path

from shared.settings import PlatformSettings


def seed_on_first_start(settings: PlatformSettings, infra, state_dir: Path) -> None:
    """Seed once per state folder; a marker file records that it was done."""
    marker = state_dir / "seeded"
    if marker.exists():
        return
    # The registry's import path arrives with the registry issue; until then there is nothing to seed.
    return
