"""The registry service's consumers; the relay comes from shared. Runs inside the API process by default
(RUN_WORKERS_IN_API=true) or alone with `eldercare worker registry` when scaled out."""

from __future__ import annotations

from shared.messaging.consumer import EventConsumer
from shared.service import ServiceRuntime


def build_consumers(runtime: ServiceRuntime) -> list[EventConsumer]:
    """The consumers this service runs (none yet: its streams arrive with its issue)."""
    return []
