"""Database access: one PostgreSQL schema per service, an asyncpg pool for hot paths and a
SQLModel/SQLAlchemy async engine for ordinary CRUD, both with the service's schema as search_path."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_ident(name: str) -> str:
    """A schema or table name we generate ourselves; refuse anything that is not a plain identifier."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f'"{name}"'


def asyncpg_dsn(url: str) -> str:
    """The libpq-style URL asyncpg takes (accepts postgresql+asyncpg:// too)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL for the asyncpg dialect; ?host=/socket/dir stays as asyncpg reads it."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


def with_database(url: str, database: str) -> str:
    """The same server, another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def redact_url(url: str) -> str:
    """A URL safe to print: the password replaced."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        parts = parts._replace(netloc=netloc)
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)])
    return urlunsplit(parts._replace(query=query))


async def _init_connection(conn: asyncpg.Connection) -> None:
    # orjson instead of the stdlib for jsonb: the consumers and ingest gateway are JSON-bound.
    # Binary format (a version byte, then the text) so COPY can carry jsonb columns too.
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: b"\x01" + orjson.dumps(v), decoder=lambda b: orjson.loads(b[1:]),
        schema="pg_catalog", format="binary",
    )
    await conn.set_type_codec(
        "json", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
    )


async def _release_quickly(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset sends "advisory unlock all; CLOSE ALL; UNLISTEN *; RESET ALL" on every
    # release: a round trip per request, a fifth of a simple read. Pooled connections here hold no
    # session state between uses (LISTEN and long-held advisory locks use their own connections; the
    # importer releases its job lock itself), so only an open transaction needs undoing.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def connect(url: str, schema: str | None = None, **kwargs) -> asyncpg.Connection:
    """One asyncpg connection (for LISTEN, advisory locks, scripts)."""
    settings = {"search_path": schema} if schema else {}
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings=settings, **kwargs)
    await _init_connection(conn)
    return conn


async def wait_for_database(url: str, timeout: float = 60.0) -> None:
    """Wait until PostgreSQL answers (startup order is not guaranteed in a deployment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
            await conn.close()
            return
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"PostgreSQL not reachable at {redact_url(url)}: {exc}") from exc
            await asyncio.sleep(0.5)


class Database:
    """A service's database: asyncpg pool + SQLAlchemy engine, both confined to its schema."""

    def __init__(self, url: str, schema: str, pool_size: int = 10, statement_timeout_s: float = 30.0) -> None:
        quote_ident(schema)
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self.statement_timeout_ms = int(statement_timeout_s * 1000)
        self.pool: asyncpg.Pool | None = None
        self.engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(
            asyncpg_dsn(self.url),
            min_size=1,
            max_size=self.pool_size,
            # No parallel workers for API queries: on a few cores under concurrent requests, starting
            # workers costs more than it saves (a county search took 38 ms parallel, 22 ms alone).
            server_settings={"search_path": self.schema, "max_parallel_workers_per_gather": "0",
                             # No request runs unbounded: the session default of every pooled connection.
                             "statement_timeout": str(self.statement_timeout_ms)},
            init=_init_connection,
            reset=_release_quickly,
        )
        self.engine = create_async_engine(
            sqlalchemy_url(self.url),
            pool_size=self.pool_size,
            max_overflow=5,
            pool_pre_ping=True,
            connect_args={"server_settings": {"search_path": self.schema,
                                              "statement_timeout": str(self.statement_timeout_ms)}},
        )
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.engine is not None:
            await self.engine.dispose()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection without a transaction: one round trip per read query."""
        assert self.pool is not None, "Database.start() first"
        async with self.pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection inside one transaction (commit on exit, rollback on error)."""
        assert self.pool is not None, "Database.start() first"
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                yield conn

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A SQLModel session committed once at the end, rolled back on error (STYLE #11)."""
        assert self._sessions is not None, "Database.start() first"
        async with self._sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> None:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a SQLAlchemy session, to write the outbox in its transaction."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


async def ensure_database(url: str) -> None:
    """Create the URL's database when missing (the embedded default starts with only `postgres`)."""
    name = database_name(url)
    admin = await asyncpg.connect(asyncpg_dsn(with_database(url, "postgres")))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
            log.info("created database %s", name)
    finally:
        await admin.close()
