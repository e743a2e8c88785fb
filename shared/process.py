"""Process-wide interpreter settings (cyclic GC, GIL switch interval), in one place.

They change the whole interpreter, so only a process entrypoint applies them (`eldercare serve`,
`worker`, `seed`, `up` and the benchmarks, in eldercare/): importing a module or building an app
never does, and a test process that builds apps keeps CPython's defaults.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

__all__ = ["ProcessTuning", "TUNING", "tune_process", "freeze_startup_heap", "tuned_app"]


@dataclass(frozen=True, slots=True)
class ProcessTuning:
    # Collect the young generation every this many allocations instead of CPython's 700.
    gc_young_threshold: int | None = None
    # Hand the GIL between threads this often (seconds) instead of CPython's 5 ms.
    switch_interval_s: float | None = None


TUNING: dict[str, ProcessTuning] = {
    # The importer's event loop feeds PostgreSQL's COPY while a reader thread parses the next chunk:
    # every millisecond the loop waits for the GIL, PostgreSQL idles.
    "registry": ProcessTuning(switch_interval_s=0.0005),
    # The fold allocates a few dozen short-lived objects per event, which die with their batch: at the
    # default threshold the collector ran every few dozen events for nothing.
    "reporting": ProcessTuning(gc_young_threshold=300_000),
    # Detection holds a parsed batch or two (models, dicts, datetimes) while the next is parsed: at
    # the default threshold each young collection walked them again (a third of the consumer's CPU).
    "alerts": ProcessTuning(gc_young_threshold=300_000),
}


def tune_process(service: str) -> None:
    """Apply `service`'s settings to this interpreter (never lowering a threshold already raised)."""
    tuning = TUNING.get(service, ProcessTuning())
    if tuning.gc_young_threshold is not None:
        young, middle, old = gc.get_threshold()
        gc.set_threshold(max(tuning.gc_young_threshold, young), middle, old)
    if tuning.switch_interval_s is not None:
        sys.setswitchinterval(min(tuning.switch_interval_s, sys.getswitchinterval()))


def freeze_startup_heap() -> None:
    """Move everything alive once a service has started (modules, models, routes, the app) out of the
    cyclic collector's sight: it lives as long as the process, and each collection then walks only
    what requests and batches allocate."""
    gc.freeze()


def tuned_app(app: FastAPI, service: str) -> FastAPI:
    """`app` with `service`'s settings applied now and its start-up heap frozen once its lifespan
    has started (for `eldercare serve`, in each of its processes)."""
    tune_process(service)
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        async with started(a) as state:
            freeze_startup_heap()
            yield state

    app.router.lifespan_context = lifespan
    return app
