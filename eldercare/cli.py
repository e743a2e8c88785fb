"""The `eldercare` command: run the platform, serve one service, issue tokens, and more."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from shared.settings import SERVICES, PlatformSettings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(help="Smart elder-care platform: run, seed, simulate, replay, benchmark.",
                  no_args_is_help=True, add_completion=False)


def _check_service(name: str) -> str:
    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    return name


@app.command()
def up(no_seed: Annotated[bool, typer.Option("--no-seed", help="Skip seeding the synthetic city")] = False) -> None:
    """Start PostgreSQL and the broker (embedded unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS are
    set), create topics, migrate, start the four services; Ctrl-C stops everything."""
    from eldercare.launcher import run_up
    from shared.process import tune_process

    tune_process("registry")  # this process imports the synthetic city on the first start
    run_up(get_settings(), seed=not no_seed)


@app.command()
def simulate(
    events_per_s: Annotated[Optional[float], typer.Option(help="device events a second, city-wide "
                                                        "(default SIMULATOR_EVENTS_PER_S)")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="stop after this long (default: until Ctrl-C)")] = None,
    seed: Annotated[int, typer.Option(help="the same seed gives the same facilities, parties and choices")] = 42,
    compression: Annotated[Optional[float], typer.Option(
        help="simulated seconds per real second (default SIMULATOR_COMPRESSION, 1 = real time; 1440 = a day "
             "a minute)")] = None,
    orders_per_day: Annotated[Optional[float], typer.Option(
        help="service orders a simulated day, city-wide (default SIMULATOR_ORDERS_PER_DAY; 0: none)")] = None,
    ack_median_s: Annotated[float, typer.Option(help="duty operators' median real seconds to acknowledge")] = 20.0,
    operator_pace: Annotated[float, typer.Option(
        help="scales the operators' real delays after acknowledging (dispatch, resolve)")] = 1.0,
    residents_per_county: Annotated[int, typer.Option(help="residents each county's actors know")] = 500,
    start_hour: Annotated[Optional[float], typer.Option(help="simulated local hour to start at (default now)")] = None,
    drain_s: Annotated[float, typer.Option(help="at the end, how long to let the stories under way finish")] = 30.0,
    summary: Annotated[Optional[Path], typer.Option(help="write the run's tally and outcomes here (JSON)")] = None,
    alarm_share: Annotated[float, typer.Option(help="share of device events that are an SOS or a fall")] = 0.001,
    mistake_share: Annotated[float, typer.Option(
        help="share of device events with a mistake beside them (re-sent, malformed, unknown resident)")] = 0.002,
    order_mistake_share: Annotated[float, typer.Option(
        help="share of orders first sent wrong (past start, quantity 0, unknown item or resident, no key)")] = 0.03,
) -> None:
    """The whole city: the county platforms post facility reports, training, family beds, visits and
    device events to the registry's gateway; offices, providers and caregivers work service orders
    through orders; duty operators answer alerts through alerts — each with a token of its own role,
    with a small share of believable mistakes, on a calendar (day/night, time compression)."""
    from eldercare.city import counts_line
    from eldercare.city import simulate as run_simulator

    settings = _local_settings()
    rate = settings.simulator_events_per_s if events_per_s is None else events_per_s
    try:
        outcome = asyncio.run(run_simulator(
            settings, events_per_s=rate, seconds=seconds, seed=seed,
            compression=settings.simulator_compression if compression is None else compression,
            orders_per_day=settings.simulator_orders_per_day if orders_per_day is None else orders_per_day,
            ack_median_s=ack_median_s, operator_pace=operator_pace, sample_size=residents_per_county,
            start_hour=start_hour, drain_s=drain_s, summary_path=summary, alarm_share=alarm_share,
            mistake_share=mistake_share, order_mistake_share=order_mistake_share))
    except KeyboardInterrupt:
        return
    typer.echo(counts_line(outcome))


SERVE_SERVICE_ENV = "ELDERCARE_SERVE_SERVICE"


def serve_app(service: str | None = None, settings: PlatformSettings | None = None) -> FastAPI:
    """The app `eldercare serve` runs in each of its processes (uvicorn's factory when there are
    several), with the service's process-wide settings (shared/process.py) applied there."""
    import importlib

    from shared.process import tuned_app

    service = service or os.environ[SERVE_SERVICE_ENV]
    return tuned_app(importlib.import_module(f"services.{service}.app").create_app(settings), service)


@app.command()
def serve(service: Annotated[str, typer.Argument(help="registry, orders, alerts or reporting")]) -> None:
    """Run one service's HTTP API (and, unless RUN_WORKERS_IN_API=false, its relay and consumers)."""
    import uvicorn

    _check_service(service)
    settings = get_settings()
    _require_secret(settings)
    workers = {"registry": settings.registry_workers, "orders": settings.orders_workers}.get(service, 1)
    options = dict(host=settings.service_host, port=settings.port_of(service), log_config=None, access_log=False,
                   timeout_graceful_shutdown=10)
    if workers > 1:
        # Several processes need an import string; each builds its app from the same environment.
        os.environ[SERVE_SERVICE_ENV] = service
        uvicorn.run("eldercare.cli:serve_app", factory=True, workers=workers, **options)
    else:
        uvicorn.run(serve_app(service, settings), **options)


@app.command()
def worker(service: Annotated[str, typer.Argument(help="registry, orders, alerts or reporting")]) -> None:
    """Run one service's outbox relay and consumers without HTTP (for scaling out)."""
    from eldercare.workers import run_worker
    from shared.process import tune_process

    _check_service(service)
    tune_process(service)
    asyncio.run(run_worker(service, get_settings()))


@app.command()
def migrate(service: Annotated[Optional[str], typer.Argument()] = None) -> None:
    """Apply migrations (all services, or one)."""
    from shared.db import ensure_database
    from shared.migrations import upgrade
    from shared.service import require_database_url

    settings = get_settings()
    url = require_database_url(settings)
    asyncio.run(ensure_database(url))
    for name in [_check_service(service)] if service else SERVICES:
        upgrade(name, url)
        typer.echo(f"{name}: migrated")


def _require_secret(settings) -> None:
    """Stop with the reason, before anything starts, when there is no JWT_SECRET."""
    from shared.settings import MissingSecret

    try:
        settings.require_jwt_secret()
    except MissingSecret as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _local_settings():
    """Settings for the local tools (token, simulate, replay): JWT_SECRET, else the secret `make up`
    keeps in the state folder."""
    from eldercare.secret import with_local_secret
    from shared.settings import MissingSecret

    try:
        return with_local_secret(get_settings(), create=False)
    except MissingSecret as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def revision(service: Annotated[str, typer.Argument()], message: Annotated[str, typer.Argument()],
             rev_id: Annotated[Optional[str], typer.Option(help="revision id, e.g. 0003")] = None) -> None:
    """Autogenerate a migration from a service's SQLModel models (orders); review it, then commit."""
    from shared.db import ensure_database
    from shared.migrations import autogenerate
    from shared.service import require_database_url

    url = require_database_url(get_settings())
    asyncio.run(ensure_database(url))
    autogenerate(_check_service(service), url, message, rev_id)


@app.command()
def token(
    role: Annotated[str, typer.Option(help="city, county, provider, caregiver or viewer")] = "city",
    county: Annotated[Optional[str], typer.Option(help="county code (for the county role)")] = None,
    subject: Annotated[Optional[str], typer.Option(
        help="the person the token is for (its `sub`, recorded in audit entries); default: your login name")] = None,
    provider: Annotated[Optional[str], typer.Option(help="provider id (provider role)")] = None,
    caregiver: Annotated[Optional[str], typer.Option(help="caregiver id (caregiver role)")] = None,
    ttl: Annotated[Optional[int], typer.Option(
        help="lifetime in seconds (default JWT_TTL_SECONDS, at most JWT_MAX_TTL_SECONDS)")] = None,
    audience: Annotated[Optional[str], typer.Option(
        help="the platform (default) or one service: registry, orders, alerts, reporting")] = None,
) -> None:
    """Print a signed bearer token for local use (signed with JWT_SECRET, else the state folder's)."""
    import getpass

    from shared.auth import Role, TokenLifetimeTooLong, audiences, issue_token

    try:
        role_value = Role(role)
    except ValueError:
        raise typer.BadParameter(f"unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}")
    if role_value == Role.COUNTY and not county:
        raise typer.BadParameter("a county token needs --county, e.g. --county 410928")
    if role_value == Role.PROVIDER and not provider:
        raise typer.BadParameter("a provider token needs --provider, the provider's id (GET /v1/providers)",
                                 param_hint="--provider")
    if role_value == Role.CAREGIVER and not caregiver:
        raise typer.BadParameter("a caregiver token needs --caregiver, the caregiver's id (GET /v1/caregivers)",
                                 param_hint="--caregiver")
    for value, option, needs in ((provider, "--provider", Role.PROVIDER), (caregiver, "--caregiver", Role.CAREGIVER)):
        if value and role_value != needs:
            raise typer.BadParameter(f"{option} goes with --role {needs.value}", param_hint=option)
    settings = _local_settings()
    if ttl is not None and ttl <= 0:
        raise typer.BadParameter("the lifetime must be positive", param_hint="--ttl")
    if ttl is not None and ttl > settings.jwt_max_ttl_seconds:
        raise typer.BadParameter(
            f"{ttl} s is longer than the longest lifetime a token may have: {settings.jwt_max_ttl_seconds} s "
            f"({settings.jwt_max_ttl_seconds / 86400:g} days, JWT_MAX_TTL_SECONDS)", param_hint="--ttl")
    if audience is not None and audience not in audiences(settings):
        raise typer.BadParameter(f"unknown audience {audience!r}; choose one of {', '.join(audiences(settings))}",
                                 param_hint="--audience")
    # A token names a person, not a generic "county:410928": audit entries say who it was.
    try:
        who = subject or getpass.getuser()
    except (KeyError, OSError):
        raise typer.BadParameter("name the person the token is for", param_hint="--subject") from None
    try:
        typer.echo(issue_token(settings, role_value, county=county, subject=who, provider_id=provider,
                               caregiver_id=caregiver, ttl_seconds=ttl, audience=audience))
    except TokenLifetimeTooLong as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from None


@app.command()
def asyncapi() -> None:
    """Print the AsyncAPI document of the platform's events."""
    from shared.events.asyncapi import build_asyncapi

    typer.echo(json.dumps(build_asyncapi(), indent=2, ensure_ascii=False))


@app.command()
def replay(
    service: Annotated[str, typer.Argument(help="the service whose projections to rebuild (reporting)")],
    url: Annotated[Optional[str], typer.Option(help="the service's base URL")] = None,
    republish: Annotated[str, typer.Option(
        help="re-publish the registry's state first: auto (when the broker's log is short), always, never")] = "auto",
) -> None:
    """Rebuild a service's projections from the event log and check the figures come out the same."""
    if service != "reporting":
        raise typer.BadParameter("only reporting keeps projections that can be replayed")
    if republish not in ("auto", "always", "never"):
        raise typer.BadParameter("--republish is auto, always or never")
    from eldercare.replay import replay_reporting

    if not replay_reporting(_local_settings(), url, republish=republish):
        raise typer.Exit(1)


@app.command()
def republish(
    service: Annotated[str, typer.Argument(help="the service whose state to re-publish (registry)")],
    url: Annotated[Optional[str], typer.Option(help="the service's base URL")] = None,
    source: Annotated[Optional[list[str]], typer.Option(
        help="residents or county_reports (repeatable; default both)")] = None,
    chunk_size: Annotated[int, typer.Option(help="rows per transaction")] = 1000,
) -> None:
    """Re-publish a service's current state as versioned snapshots (an incremental snapshot job:
    chunks by primary key, interleaved with live traffic, resumable), with a progress bar."""
    if service != "registry":
        raise typer.BadParameter("only the registry has state to re-publish yet (orders and alerts plug "
                                 "their tables into shared/messaging/snapshots.py when they have some)")
    import httpx

    from eldercare.republish import republish_registry

    try:
        status = republish_registry(_local_settings(), url, sources=source, chunk_size=chunk_size)
    except (httpx.HTTPError, RuntimeError, TimeoutError) as exc:
        typer.echo(f"re-publish failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"re-published {status['emitted']:,} rows in {status['chunks']:,} chunks (job {status['id']})")


@app.command("seed")
def seed_command(
    residents: Annotated[int, typer.Option(help="entries in the registry (SPEC §4: about 700,000)")] = 700_000,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same city")] = 42,
    csv: Annotated[Optional[Path], typer.Option(
        help="where the CSV goes (default: under the state folder); an existing file is imported as it is")] = None,
) -> None:
    """Generate the synthetic city and load it through the registry's import path.

    A city-wide import job, with progress bars; the registry's relay publishes the events. Uses
    DATABASE_URL, else the embedded PostgreSQL."""
    from eldercare.infra import PG_DATABASE, EmbeddedPostgres
    from eldercare.seeding import seed_registry
    from shared.process import tune_process

    tune_process("registry")  # the import runs in this process
    settings = get_settings()
    state_dir = settings.eldercare_state_dir.resolve()
    postgres = None
    url = settings.database_url
    if not url:
        postgres = EmbeddedPostgres(state_dir / "pgdata").start()
        url = postgres.url_for(PG_DATABASE)
    try:
        seed_registry(url, state_dir, residents=residents, seed=seed, csv_path=csv)
    except RuntimeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        if postgres is not None and postgres.started_here:
            postgres.stop()


bench_app = typer.Typer(help="Benchmarks (results go to docs/benchmarks.md).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("backbone")
def bench_backbone(
    events: Annotated[int, typer.Option(help="events to write and relay")] = 50_000,
    runs: Annotated[int, typer.Option(help="repetitions; the median is reported")] = 3,
) -> None:
    """Outbox relay throughput against raw aiokafka produce on the same broker."""
    from bench.backbone import main

    main(events=events, runs=runs)


@bench_app.command("orders")
def bench_orders(
    residents: Annotated[int, typer.Option(help="residents in the orders projection")] = 20_000,
    rate: Annotated[float, typer.Option(help="orders/s offered (open loop)")] = 1000,
    seconds: Annotated[float, typer.Option(help="duration of the measurement")] = 10,
    part: Annotated[str, typer.Option(
        help="place (orders/s through a real orders process), lifecycle (N orders placed, accepted, "
             "assigned, visited, confirmed, settled, then reconciled to the fen) or all")] = "place",
    orders: Annotated[int, typer.Option(help="lifecycle: orders driven through their lifecycle")] = 100_000,
    workers: Annotated[int, typer.Option(help="lifecycle: concurrent callers (one connection each)")] = 8,
    raw_sample: Annotated[int, typer.Option(help="lifecycle: orders the raw asyncpg limit is measured on")] = 20_000,
) -> None:
    """Orders placed/s and latency through a real orders process, against raw asyncpg inserts of the
    same rows in the same run; then the splits and budgets reconciled. `--part lifecycle`: orders
    through their whole lifecycle, the statements reconciled with the orders and budgets."""
    import json

    from bench.orders import main

    if part not in ("place", "lifecycle", "all"):
        raise typer.BadParameter("place, lifecycle or all", param_hint="--part")
    result = main(residents=residents, rate=rate, seconds=seconds, part=part, orders=orders, workers=workers,
                  raw_sample=raw_sample)
    lifecycle = result.get("lifecycle")
    if lifecycle is not None:
        typer.echo(json.dumps(lifecycle, ensure_ascii=False, default=str))
        if not lifecycle["checks"]["reconciled"]:
            typer.echo("the lifecycle run did NOT reconcile", err=True)
            raise typer.Exit(1)


@bench_app.command("registry")
def bench_registry(
    rows: Annotated[int, typer.Option(help="rows of the synthetic city to import")] = 700_000,
    runs: Annotated[int, typer.Option(help="repetitions; the median is reported")] = 3,
    part: Annotated[str, typer.Option(
        help="import, api (reads and ingest), ingest (the gateway alone) or all")] = "all",
    rate: Annotated[float, typer.Option(help="requests/s for get-by-id and ID-number lookups")] = 1000,
    seconds: Annotated[float, typer.Option(help="duration of each read measurement")] = 10,
) -> None:
    """The registry's bulk import against a raw COPY of the same rows; get-by-id, ID-number lookup and
    filtered search latency at a fixed rate; ingest gateway throughput in batches of 500."""
    if part not in ("import", "api", "ingest", "all"):
        raise typer.BadParameter("part is import, api, ingest or all")
    from bench.common import bench_infrastructure, fresh_database

    # One server and broker for every part; each part gets an empty database of its own.
    with bench_infrastructure() as (url, bootstrap):
        if part in ("import", "all"):
            from bench.registry import main
            from shared.process import tune_process

            tune_process("registry")  # the import runs in this process, as in `eldercare seed`
            main(rows=rows, runs=runs, url=url)
        if part in ("api", "ingest", "all"):
            from bench.registry_api import bench_registry_api

            if part == "all":
                fresh_database(url)  # not the import's residents and its outbox of events
            asyncio.run(bench_registry_api(url, bootstrap, rows, rate, seconds, ingest_batches=200,
                                           reads=part != "ingest"))


@bench_app.command("alerts")
def bench_alerts_command(
    residents: Annotated[int, typer.Option(help="residents in the alerts projection for the throughput run")] = 20_000,
    readings: Annotated[int, typer.Option(help="telemetry readings fed straight into the ingest topic")] = 300_000,
    rate: Annotated[int, typer.Option(help="background readings/s through the gateway during the SOS run")] = 5000,
    seconds: Annotated[float, typer.Option(help="duration of the SOS latency run")] = 20,
    part: Annotated[str, typer.Option(help="throughput, latency or all")] = "all",
) -> None:
    """Readings evaluated per second (against raw getmany of the same records); SOS gateway → alert
    stream delay with a background of readings through the gateway."""
    if part not in ("throughput", "latency", "all"):
        raise typer.BadParameter("part is throughput, latency or all")
    from bench.alerts import bench_alerts
    from bench.common import bench_infrastructure
    from shared.process import tune_process

    tune_process("alerts")  # the detection consumer runs in this process, as in `eldercare serve alerts`
    with bench_infrastructure() as (url, bootstrap):
        asyncio.run(bench_alerts(url, bootstrap, residents, readings, rate, seconds, part))


@bench_app.command("reporting")
def bench_reporting_command(
    residents: Annotated[int, typer.Option(help="registered events of the registry's history")] = 700_000,
    rate: Annotated[int, typer.Option(help="events/s posted to the ingest gateway for the stream delay")] = 5000,
    seconds: Annotated[float, typer.Option(help="duration of the stream measurement")] = 10,
) -> None:
    """Events folded per second (against raw getmany), replay time, ingest-to-stream delay."""
    from bench.common import bench_infrastructure
    from bench.reporting import bench_reporting

    with bench_infrastructure() as (url, bootstrap):
        asyncio.run(bench_reporting(url, bootstrap, residents, rate, seconds))


@bench_app.command("all")
def bench_all_command(
    quick: Annotated[bool, typer.Option("--quick", help="every part small: a first look in under 5 minutes")] = False,
    part: Annotated[Optional[list[str]], typer.Option(
        help="only these parts (repeatable): backbone, registry_import, registry_api, orders, alerts, reporting, "
             "pg_recovery, city")] = None,
    docs: Annotated[Path, typer.Option(help="the folder with benchmarks.md (its generated section is rewritten) "
                                            "and where the chart goes")] = Path("docs"),
) -> None:
    """Every benchmark in one run (each part on a fresh database, raw limits measured alongside), the
    whole platform under the city simulator at increasing load until a latency target breaks; then
    the figures section of docs/benchmarks.md rewritten and a chart of answer time against load."""
    from bench.all import PARTS, run_all

    chosen = tuple(part or PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise typer.BadParameter(f"unknown part {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    results = run_all(quick=quick, parts=chosen, docs=docs.resolve())
    typer.echo(f"wrote {docs / 'benchmarks.md'} (section) and {docs / 'bench-city-latency.png'}; "
               f"seconds per part: {results['seconds']}")


@bench_app.command("pg-recovery")
def bench_pg_recovery(
    runs: Annotated[int, typer.Option(help="restarts of each kind (stopped, killed); medians reported")] = 3,
) -> None:
    """PostgreSQL stopped or killed under traffic: seconds from its return to serving again."""
    from bench.pg_recovery import main

    main(runs=runs)


if __name__ == "__main__":
    app()
