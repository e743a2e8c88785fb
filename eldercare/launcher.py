"""`eldercare up`: the embedded PostgreSQL and broker (unless pointed elsewhere), topics,
migrations, the four services; a clean stop of everything it started on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

from eldercare.infra import BrokerSupervisor, EmbeddedBroker, EmbeddedPostgres, PG_DATABASE
from eldercare.secret import with_local_secret
from shared.db import ensure_database, redact_url
from shared.messaging.kafka import ensure_topics, wait_for_broker
from shared.messaging.topics import all_topic_names
from shared.migrations import upgrade
from shared.settings import SERVICES, PlatformSettings

console = Console(stderr=True)


@dataclass
class Infrastructure:
    """The database and broker the platform runs on, and what this launcher started itself."""

    database_url: str
    bootstrap: str
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    supervisor: BrokerSupervisor | None = None

    def supervise(self, settings: PlatformSettings) -> None:
        """Watch the embedded broker: start it again when it exits, roll it over its memory budget."""
        if self.broker is None:
            return
        self.supervisor = BrokerSupervisor(
            self.broker, all_topic_names(), settings.kafka_partitions, settings.kafka_replication_factor,
            memory_budget_bytes=settings.broker_memory_budget_mb * 2**20,
            min_roll_interval_s=settings.broker_roll_min_interval_s, say=_say,
        ).start()

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None and self.postgres.started_here:
            self.postgres.stop()

    def restart_postgres_if_stopped(self) -> bool:
        """Start the embedded PostgreSQL again if it is no longer running (stopped by hand,
        crashed, killed); True when it was. The services reconnect by themselves."""
        if self.postgres is None or self.postgres.is_running():
            return False
        self.postgres.start()
        return True


def start_infrastructure(settings: PlatformSettings, state_dir: Path) -> Infrastructure:
    """Start what DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS do not already name; create topics; migrate."""
    postgres = broker = None
    if settings.database_url:
        database_url = settings.database_url
        console.print(f"PostgreSQL: [bold]{redact_url(database_url)}[/] (from DATABASE_URL)")
    else:
        postgres = EmbeddedPostgres(state_dir / "pgdata").start()
        database_url = postgres.url
        how = "started" if postgres.started_here else "already running"
        console.print(f"PostgreSQL: embedded, {how}, data in [bold]{postgres.pgdata}[/]")
    infra = Infrastructure(database_url=database_url, bootstrap="", postgres=postgres)
    try:
        if settings.kafka_bootstrap_servers:
            infra.bootstrap = settings.kafka_bootstrap_servers
            console.print(f"Kafka: [bold]{infra.bootstrap}[/] (from KAFKA_BOOTSTRAP_SERVERS)")
        else:
            broker = EmbeddedBroker(settings.broker_port, state_dir / "logs" / "broker.log").start()
            infra.broker = broker
            infra.bootstrap = broker.bootstrap
            console.print(f"Kafka: embedded Tansu broker on [bold]{broker.bootstrap}[/] (memory log)")
        asyncio.run(_prepare(infra, settings))
        infra.supervise(settings)
    except BaseException:
        infra.stop()
        raise
    return infra


async def _prepare(infra: Infrastructure, settings: PlatformSettings) -> None:
    await wait_for_broker(infra.bootstrap, timeout=60)
    await ensure_topics(infra.bootstrap, all_topic_names(), settings.kafka_partitions,
                        settings.kafka_replication_factor)
    await ensure_database(infra.database_url)
    for service in SERVICES:
        await asyncio.to_thread(upgrade, service, infra.database_url)


# A service that exits this many times, each within this many seconds of its start, is not restarted.
CRASH_LOOP_EXITS, CRASH_LOOP_WINDOW_S = 3, 60.0


@dataclass
class ServiceProcesses:
    """The service processes this launcher runs, each logging to `<state>/logs/<service>.log`."""

    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # When each service last started, and how often it died soon after starting (a crash loop).
    started_at: dict[str, float] = field(default_factory=dict)
    quick_exits: dict[str, int] = field(default_factory=dict)

    def start(self, settings: PlatformSettings, infra: Infrastructure, log_dir: Path,
              services: tuple[str, ...] = SERVICES) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        # The partition count the topics were created with: a service expecting another publishes
        # nothing (its relay reports the topics as wrong), so the children take the launcher's.
        env = dict(os.environ, DATABASE_URL=infra.database_url, KAFKA_BOOTSTRAP_SERVERS=infra.bootstrap,
                   JWT_SECRET=settings.require_jwt_secret(), KAFKA_PARTITIONS=str(settings.kafka_partitions))
        for service in services:
            logfile = (log_dir / f"{service}.log").open("ab")
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", "eldercare.cli", "serve", service],
                env=env, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
            logfile.close()
            self.started_at[service] = time.monotonic()

    def restart_exited(self, settings: PlatformSettings, infra: Infrastructure, log_dir: Path) -> list[str]:
        """Start again each service whose process ended (killed, crashed): its relay and consumers
        take up where the outbox and the committed offsets say, so nothing is lost or doubled.
        RuntimeError for a service that died within a minute of starting three times running."""
        exited = [service for service, proc in self.processes.items() if proc.poll() is not None]
        for service in exited:
            quick = time.monotonic() - self.started_at.get(service, 0.0) < CRASH_LOOP_WINDOW_S
            self.quick_exits[service] = self.quick_exits.get(service, 0) + 1 if quick else 0
            if self.quick_exits[service] >= CRASH_LOOP_EXITS:
                raise RuntimeError(f"the {service} service keeps stopping (exit code "
                                   f"{self.processes[service].returncode}); see its log")
            self.start(settings, infra, log_dir, (service,))
        return exited

    def wait_healthy(self, settings: PlatformSettings, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.processes)
        while pending:
            for service in sorted(pending):
                proc = self.processes[service]
                if proc.poll() is not None:
                    raise RuntimeError(f"the {service} service exited with code {proc.returncode}; "
                                       f"see its log")
                url = f"http://{settings.service_host}:{settings.port_of(service)}/readyz"
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        pending.discard(service)
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            time.sleep(0.3)

    def any_exited(self) -> str | None:
        for service, proc in self.processes.items():
            if proc.poll() is not None:
                return service
        return None

    def stop(self, timeout: float = 15.0) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_simulator(infra: Infrastructure, log_dir: Path, jwt_secret: str) -> subprocess.Popen:
    """The city simulator (`eldercare simulate`), playing every user until stopped."""
    env = dict(os.environ, DATABASE_URL=infra.database_url, KAFKA_BOOTSTRAP_SERVERS=infra.bootstrap,
               JWT_SECRET=jwt_secret)
    with (log_dir / "simulator.log").open("ab") as logfile:
        return subprocess.Popen([sys.executable, "-m", "eldercare.cli", "simulate"], env=env, stdout=logfile,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _say(message: str) -> None:
    """A supervisor step on the launcher's console, with the time (it happens while the platform runs)."""
    console.print(f"[yellow]{time.strftime('%H:%M:%S')} {message}[/]", soft_wrap=True)


class _Stop(Exception):
    pass


def run_up(settings: PlatformSettings, seed: bool = True) -> None:
    """Start everything, print the addresses, run until Ctrl-C or SIGTERM, then stop it all."""
    started = time.monotonic()
    state_dir = settings.eldercare_state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    # JWT_SECRET if the operator set one, else the state folder's own (generated on the first start,
    # mode 0600); the children get it through their environment.
    settings = with_local_secret(settings, create=True)

    def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        raise _Stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    infra: Infrastructure | None = None
    services = ServiceProcesses()
    simulator: subprocess.Popen | None = None
    try:
        infra = start_infrastructure(settings, state_dir)
        services.start(settings, infra, state_dir / "logs")
        services.wait_healthy(settings)
        if seed:
            from eldercare.seeding import seed_on_first_start

            seed_on_first_start(settings, infra, state_dir)
        if settings.simulator_events_per_s > 0:
            simulator = start_simulator(infra, state_dir / "logs", settings.require_jwt_secret())
        _print_ready(settings, state_dir, time.monotonic() - started)
        while True:
            if infra.restart_postgres_if_stopped():
                console.print("[yellow]PostgreSQL had stopped; started it again on "
                              f"{infra.postgres.pgdata} (the services reconnect by themselves).[/]")
            try:
                for exited in services.restart_exited(settings, infra, state_dir / "logs"):
                    console.print(f"[yellow]The {exited} service stopped unexpectedly (see "
                                  f"{state_dir / 'logs' / (exited + '.log')}); started it again.[/]")
            except RuntimeError as exc:
                console.print(f"[red]{exc}. Shutting down.[/]")
                break
            time.sleep(0.5)
    except _Stop:
        console.print("Stopping…")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if simulator is not None:
            stop_process(simulator)
        services.stop()
        if infra is not None:
            infra.stop()
        console.print("Stopped.")


def _print_ready(settings: PlatformSettings, state_dir: Path, seconds: float) -> None:
    host = settings.service_host
    console.print(f"\n[bold green]Elder-care platform is up[/] ({seconds:.1f}s)")
    for service in SERVICES:
        console.print(f"  {service:<10} http://{host}:{settings.port_of(service)}   "
                      f"(API docs: /docs, health: /readyz)")
    from shared.auth import Role, issue_token

    # A week-long viewer token in the address: the big screen opens it once and keeps it. The only
    # long-lived token the platform issues, so it is addressed to reporting alone.
    viewer = issue_token(settings, Role.VIEWER, subject="dashboard", ttl_seconds=7 * 86400, audience="reporting")
    console.print(f"  dashboard  http://{host}:{settings.reporting_port}/?token={viewer}", soft_wrap=True)
    if settings.simulator_events_per_s > 0:
        speed = "real time" if settings.simulator_compression == 1 else f"×{settings.simulator_compression:g}"
        console.print(f"  simulator  the county platforms post ~{settings.simulator_events_per_s:g} events/s; offices, "
                      f"providers and caregivers work ~{settings.simulator_orders_per_day:g} orders a day; duty "
                      f"operators answer alerts ({speed}; SIMULATOR_EVENTS_PER_S=0 turns it off)")
    console.print(f"  logs       {state_dir / 'logs'}")
    console.print("Get a token: [bold].venv/bin/eldercare token --role city[/]. Ctrl-C stops everything.\n")


__all__ = ["PG_DATABASE", "Infrastructure", "ServiceProcesses", "run_up", "start_infrastructure"]
