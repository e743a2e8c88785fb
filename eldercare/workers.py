"""`eldercare worker <service>`: a service's relay and consumers in their own process (the command
applies the service's process-wide settings, shared/process.py, before this runs)."""

from __future__ import annotations

import asyncio
import importlib
import signal

from shared.observability import configure_logging
from shared.process import freeze_startup_heap
from shared.service import start_runtime
from shared.settings import PlatformSettings


async def run_worker(service: str, settings: PlatformSettings) -> None:
    """Run until SIGTERM/SIGINT; the database transaction of an interrupted batch rolls back."""
    configure_logging(f"{service}-worker", settings.log_level, settings.log_json)
    module = importlib.import_module(f"services.{service}.worker")
    runtime = await start_runtime(service, settings, module.build_consumers, getattr(module, "PRUNE_TARGETS", ()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime.start_workers()
    freeze_startup_heap()
    try:
        await stop.wait()
    finally:
        await runtime.stop_workers()
        await runtime.db.close()
