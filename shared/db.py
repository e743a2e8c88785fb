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
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Errors that mean "PostgreSQL is not there right now" (stopped, restarting, recovering from a crash,
# out of connection slots, or not answering within the timeout), not "this request is wrong". OSError
# covers a refused or missing socket and TimeoutError (a subclass since Python 3.11). asyncpg raises
# InternalClientError ("another operation is in progress") on a connection lost mid-statement.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError, asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InternalClientError,
)


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or did not answer in time; the request may be retried.
    Mapped to 503 with Retry-After by shared.problems."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


def is_connection_error(exc: BaseException) -> bool:
    """True for an error meaning the database is unreachable, also when SQLAlchemy wrapped it."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, (DatabaseUnavailable, sqlalchemy.exc.TimeoutError, *CONNECTION_ERRORS)):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__
        seen += 1
    return False


class _OneLineWhileAway(logging.Filter):
    """asyncpg logs a full traceback each time it fails to refill the pool while PostgreSQL is away
    (with its own backoff); one line says as much."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and isinstance(record.exc_info[1], CONNECTION_ERRORS):
            record.msg = f"{record.getMessage()} ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLineWhileAway())


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


async def connect(url: str, schema: str | None = None, *, server_settings: dict | None = None,
                  **kwargs) -> asyncpg.Connection:
    """One asyncpg connection (for LISTEN, advisory locks, scripts)."""
    settings = {"search_path": schema} if schema else {}
    settings.update(server_settings or {})
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


def connection_lost(conn: asyncpg.Connection) -> bool:
    """True when a (pooled) connection died: closed, or already taken back by the pool because it
    was lost (the proxy then refuses every call)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


def _raise_if_died(exc: Exception, conn: asyncpg.Connection) -> None:
    """Any error on a connection that died meanwhile means the database went away (asyncpg then
    also reports client-state errors, such as "another operation is in progress")."""
    if not isinstance(exc, CONNECTION_ERRORS) and connection_lost(conn):
        raise DatabaseUnavailable(exc) from exc


class Database:
    """A service's database: asyncpg pool + SQLAlchemy engine, both confined to its schema."""

    def __init__(self, url: str, schema: str, pool_size: int = 10, *, statement_timeout_s: float = 30.0,
                 acquire_timeout: float = 5.0, command_timeout: float = 30.0) -> None:
        quote_ident(schema)
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self.statement_timeout_ms = int(statement_timeout_s * 1000)
        # Bounds on a request's wait: for a pooled connection (all busy, or PostgreSQL away and the
        # connect attempt hanging) and for any one statement. Past them the caller gets 503.
        self.acquire_timeout = acquire_timeout
        self.command_timeout = command_timeout
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
            command_timeout=self.command_timeout,
            timeout=self.acquire_timeout,
        )
        self.engine = create_async_engine(
            sqlalchemy_url(self.url),
            pool_size=self.pool_size,
            max_overflow=5,
            pool_pre_ping=True,
            pool_timeout=self.acquire_timeout,
            connect_args={"server_settings": {"search_path": self.schema,
                                              "statement_timeout": str(self.statement_timeout_ms)},
                          "command_timeout": self.command_timeout, "timeout": self.acquire_timeout},
        )
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.engine is not None:
            await self.engine.dispose()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection without a transaction: one round trip per read query. PostgreSQL
        away or not answering in time raises DatabaseUnavailable (503), never a hang."""
        assert self.pool is not None, "Database.start() first"
        try:
            async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
                try:
                    yield conn
                except Exception as exc:
                    _raise_if_died(exc, conn)
                    raise
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection inside one transaction (commit on exit, rollback on error)."""
        assert self.pool is not None, "Database.start() first"
        try:
            async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
                try:
                    async with conn.transaction():
                        yield conn
                except Exception as exc:
                    _raise_if_died(exc, conn)
                    raise
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(exc) from exc

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A SQLModel session committed once at the end, rolled back on error (STYLE #11)."""
        assert self._sessions is not None, "Database.start() first"
        try:
            async with self._sessions() as session:
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        except Exception as exc:
            if is_connection_error(exc) and not isinstance(exc, DatabaseUnavailable):
                raise DatabaseUnavailable(exc) from exc
            raise

    async def ping(self) -> None:
        assert self.pool is not None
        async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=self.acquire_timeout)


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
