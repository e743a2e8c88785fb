"""The registry service's consumers; the relay comes from shared. Runs inside the API process by default
(RUN_WORKERS_IN_API=true) or alone with `eldercare worker registry` when scaled out."""

from __future__ import annotations

from shared.messaging.consumer import EventConsumer
from shared.messaging.pruning import PruneTarget
from shared.service import ServiceRuntime

# The ingest gateway's (source, id) claims are pruned like the inbox: a county re-posting an event
# within DEDUP_RETENTION_DAYS gets "duplicate"; the audit log is never pruned.
PRUNE_TARGETS = (PruneTarget("ingest_events", "received_at"),)


def build_consumers(runtime: ServiceRuntime) -> list[EventConsumer]:
    """The consumers this service runs (none yet: its streams arrive with its issue)."""
    return []
