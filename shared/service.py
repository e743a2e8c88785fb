"""What every service shares: start-up (wait, migrate, connect), workers, health, metrics, docs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.auth import document_bearer_auth
from shared.db import Database, database_name, ensure_database, wait_for_database, with_database
from shared.events.asyncapi import build_asyncapi
from shared.http import FastJSONResponse, PlatformMiddleware
from shared.messaging.consumer import EventConsumer
from shared.messaging.kafka import ensure_topics, wait_for_broker
from shared.messaging.pruning import SHARED_TARGETS, PruneTarget, Pruner
from shared.messaging.relay import OutboxRelay
from shared.messaging.topics import INGEST, all_topic_names
from shared.migrations import upgrade_async
from shared.observability import configure_logging
from shared.problems import DATABASE_RETRY_AFTER_S, ProblemMap, ServiceUnavailable, install_problem_handlers
from shared.settings import PlatformSettings, get_settings

log = logging.getLogger(__name__)


@dataclass
class ServiceRuntime:
    """A running service: its settings, database, relay and consumers."""

    name: str
    settings: PlatformSettings
    db: Database
    relay: OutboxRelay | None = None
    pruner: Pruner | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    # Other long-running loops of the service's workers (orders' and alerts' schedulers): (name, coroutine factory).
    background: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    # Service-specific long-lived objects (e.g. reporting's live-stream broadcaster).
    state: dict[str, object] = field(default_factory=dict)

    def start_workers(self) -> None:
        if self.relay is not None:
            self.tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        if self.pruner is not None:
            self.tasks.append(asyncio.create_task(self.pruner.run(), name=f"{self.name}-pruner"))
        for consumer in self.consumers:
            self.tasks.append(asyncio.create_task(consumer.run(), name=f"{consumer.name}-consumer"))
        for name, run in self.background:
            self.tasks.append(asyncio.create_task(run(), name=f"{self.name}-{name}"))

    async def stop_workers(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


ConsumerFactory = Callable[[ServiceRuntime], list[EventConsumer]]


def require_database_url(settings: PlatformSettings) -> str:
    if not settings.database_url:
        raise RuntimeError(
            "DATABASE_URL is not set. Start the platform with `make up` (or `eldercare up`), which "
            "starts an embedded PostgreSQL, or set DATABASE_URL to an existing server."
        )
    return settings.database_url


def require_bootstrap(settings: PlatformSettings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise RuntimeError(
            "KAFKA_BOOTSTRAP_SERVERS is not set. Start the platform with `make up`, which starts an "
            "embedded broker, or set KAFKA_BOOTSTRAP_SERVERS to an existing Kafka."
        )
    return settings.kafka_bootstrap_servers


async def start_runtime(name: str, settings: PlatformSettings, consumers: ConsumerFactory | None,
                        prune_targets: Sequence[PruneTarget] = ()) -> ServiceRuntime:
    """Wait for PostgreSQL, migrate this service's schema, connect; build (not start) its workers.
    `prune_targets`: the service's own de-duplication tables, pruned with the shared ones."""
    url = require_database_url(settings)
    bootstrap = require_bootstrap(settings)
    await _wait_and_migrate(name, url)
    await _create_missing_topics(name, bootstrap, settings)
    db = Database(url, schema=name, pool_size=settings.db_pool_size,
                  statement_timeout_s=settings.db_statement_timeout_s,
                  acquire_timeout=settings.db_acquire_timeout_s, command_timeout=settings.db_command_timeout_s)
    await db.start()
    runtime = ServiceRuntime(name=name, settings=settings, db=db)
    runtime.relay = OutboxRelay(
        service=name,
        database_url=url,
        schema=name,
        bootstrap=bootstrap,
        partitions=settings.kafka_partitions,
        replication=settings.kafka_replication_factor,
        batch_size=settings.outbox_batch_size,
        retention_days=settings.outbox_retention_days,
        check_interval=settings.relay_check_interval_s,
        topic_retention_hours={INGEST.name: settings.outbox_telemetry_retention_hours},
    )
    runtime.pruner = Pruner(
        service=name, database_url=url, schema=name, targets=(*SHARED_TARGETS, *prune_targets),
        retention_days=settings.dedup_retention_days, batch_size=settings.prune_batch_size,
        interval_s=settings.prune_interval_s,
    )
    if consumers is not None:
        runtime.consumers = consumers(runtime)
    return runtime


async def _wait_and_migrate(name: str, url: str) -> None:
    await wait_for_database(with_database(url, "postgres") if database_name(url) != "postgres" else url)
    await ensure_database(url)
    await upgrade_async(name, url)


async def _create_missing_topics(name: str, bootstrap: str, settings: PlatformSettings) -> None:
    """Create missing platform topics once, at start (a deployment without the launcher, e.g.
    docker-compose, has no one else to do it; Kafka settles concurrent creations of one topic). Never
    again while running: after a broker restart the embedded broker's supervisor (or an operator)
    creates them, and the relay waits (see OutboxRelay._connect_broker)."""
    try:
        await ensure_topics(bootstrap, all_topic_names(), settings.kafka_partitions,
                            settings.kafka_replication_factor, timeout=10)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        log.warning("could not check the topics at start (%s); the relay waits for them", exc,
                    extra={"fields": {"service": name}})


def health_router(name: str) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Alive")
    async def healthz() -> dict:
        return {"status": "ok", "service": name}

    @router.get("/readyz", summary="Database and broker reachable",
                responses={503: {"description": "Database or broker unreachable"}})
    async def readyz(request: Request) -> JSONResponse:
        runtime: ServiceRuntime = request.app.state.runtime
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(runtime.db.ping(), 2)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"unreachable: PostgreSQL is not answering ({type(exc).__name__})"
        try:
            await wait_for_broker(require_bootstrap(runtime.settings), timeout=2)
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        # The relay's leader checks the topics it publishes to; one missing or with another
        # partition count is named here (nothing is published into it until it is right).
        if runtime.relay is not None and runtime.relay.topic_problems:
            checks["topics"] = "; ".join(f"{t} {p}" for t, p in sorted(runtime.relay.topic_problems.items()))
        else:
            checks["topics"] = "ok"
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not ready", "service": name, "checks": checks}
        if runtime.relay is not None:
            body["relay"] = {"leader": runtime.relay.is_leader, "published": runtime.relay.published_total,
                             "replays": runtime.relay.replays,
                             "replaying": runtime.relay.replay is not None}
        return JSONResponse(body, status_code=200 if ready else 503,
                            headers=None if ready else {"Retry-After": str(DATABASE_RETRY_AFTER_S)})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/asyncapi.json", summary="AsyncAPI document of the platform's events")
    async def asyncapi() -> dict:
        return build_asyncapi()

    return router


def create_service_app(
    name: str,
    *,
    title: str,
    description: str,
    routers: list[APIRouter] = (),  # type: ignore[assignment]
    consumers: ConsumerFactory | None = None,
    settings: PlatformSettings | None = None,
    max_body_bytes: int = 5 * 1024 * 1024,
    path_limits: dict[str, int] | None = None,
    on_start: Callable[[ServiceRuntime], object] | None = None,
    own_text_checks: tuple[str, ...] = (),
    prune_targets: Sequence[PruneTarget] = (),
    problems: ProblemMap | None = None,
) -> FastAPI:
    """The FastAPI app of a service, with the platform's lifespan, middleware and operations routes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        # Refuse to start without a secret: there is no built-in one to fall back to (MissingSecret).
        cfg.require_jwt_secret()
        configure_logging(name, cfg.log_level, cfg.log_json)
        app.state.settings = cfg
        runtime = await start_runtime(name, cfg, consumers, prune_targets)
        app.state.runtime = runtime
        if on_start is not None:
            result = on_start(runtime)
            if asyncio.iscoroutine(result):
                await result
        if cfg.run_workers_in_api:
            runtime.start_workers()
        log.info("service started", extra={"fields": {"port": cfg.port_of(name)}})
        try:
            yield
        finally:
            await runtime.stop_workers()
            await runtime.db.close()

    # FastAPI's native OpenTelemetry hooks are off: metrics are Prometheus (/metrics), trace context is
    # W3C traceparent handled by PlatformMiddleware, and the check for a configured provider ran on
    # every request.
    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan,
                  openapi_url="/openapi.json", docs_url="/docs", default_response_class=FastJSONResponse,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    # Tokens addressed to this service (aud) are accepted here besides platform-wide ones.
    app.state.service = name
    install_problem_handlers(app, problems)
    document_bearer_auth(app)
    app.add_middleware(PlatformMiddleware, service=name, max_body_bytes=max_body_bytes,
                       path_limits=path_limits, own_text_checks=own_text_checks)
    app.include_router(health_router(name))
    for router in routers:
        app.include_router(router)
    return app


def runtime_of(request: Request) -> ServiceRuntime:
    """The app's runtime (503 while the service is still starting)."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ServiceUnavailable("The service is starting.")
    return runtime


async def get_runtime(request: Request) -> ServiceRuntime:
    return runtime_of(request)


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
