"""The PostgreSQL pool, its cleanup context, and one translation of outages into a JSON 503."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from gateway.config import Settings
from gateway.errors import GatewayError, ServiceUnavailable

log = logging.getLogger("gateway.db")

# Errors that mean "the database is not there right now", as opposed to a bug in a query.
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool: nothing beyond what asyncpg
    already does (roll back an open transaction, drop listeners).

    asyncpg's default also runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``:
    one more round trip on every request, a large share of a redirect's cost. The gateway
    sets no session state, holds no cursors or LISTENs, and takes only transaction-scoped
    advisory locks: nothing outlives a transaction, which is also what PgBouncer's
    transaction pooling needs (the next transaction may run on another server connection).
    """


def connect_options(*, pgbouncer: bool, statement_timeout: float | None = None) -> dict[str, Any]:
    """asyncpg's connection options, for PostgreSQL itself or for PgBouncer in transaction
    pooling mode (``GATEWAY_DB_PGBOUNCER``).

    Behind PgBouncer, consecutive statements of one client may run on different server
    connections. A named prepared statement (asyncpg's statement cache) would be looked for on
    the wrong one, and left behind for the next client to collide with, so the cache is off:
    asyncpg then prepares each statement unnamed and executes it with no Sync in between,
    which PgBouncer keeps on one server connection (PgBouncer 1.21+ could track named ones with
    ``max_prepared_statements``; Debian 12 ships 1.18, and off works with every version).
    PgBouncer also refuses start-up parameters other than a few such as ``application_name``:
    ``statement_timeout`` is not sent then, and the client-side command timeout (which cancels
    an overrunning statement through PgBouncer) bounds each statement instead.
    """
    server_settings = {"application_name": "packgate"}
    if pgbouncer:
        return {"statement_cache_size": 0, "server_settings": server_settings}
    if statement_timeout is not None:
        server_settings["statement_timeout"] = str(int(statement_timeout * 1000))
    return {"server_settings": server_settings}


async def connect(dsn: str, *, pgbouncer: bool = False, timeout: float = 30) -> asyncpg.Connection:
    """One connection outside the pool (commands such as migrate and bootstrap), with the
    pool's options for PostgreSQL or PgBouncer."""
    return await asyncpg.connect(dsn, timeout=timeout, **connect_options(pgbouncer=pgbouncer))


class DatabaseUnavailable(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("the database is unavailable")


class Database:
    """A pool with bounded waits: acquiring, and every statement, time out."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self.pool = pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Database]:
        # min_size=0: the gateway starts, and answers 503, while PostgreSQL is still down;
        # connections are made on demand, so service resumes by itself when it is back.
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=0,
            max_size=settings.db_pool_max,
            max_inactive_connection_lifetime=300,
            reset=_reset,
            timeout=settings.db_acquire_timeout,
            command_timeout=settings.db_statement_timeout,
            **connect_options(pgbouncer=settings.db_pgbouncer,
                              statement_timeout=settings.db_statement_timeout),
        )
        try:
            yield cls(pool, settings.db_acquire_timeout)
        finally:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, *UNAVAILABLE):
                pool.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self.pool.acquire(timeout=self._acquire_timeout) as conn:
                try:
                    yield conn
                except Exception as exc:
                    # A server that goes away mid-statement can surface as a protocol error
                    # (InternalClientError "another operation is in progress"), not only as
                    # a connection error: on a connection that is now closed, it is an outage.
                    if not isinstance(exc, (*UNAVAILABLE, GatewayError)) and (
                        conn.is_closed() or isinstance(exc, asyncpg.InternalClientError)
                    ):
                        raise DatabaseUnavailable() from exc
                    raise
        except UNAVAILABLE as exc:
            log.warning("database unavailable: %r", exc)
            raise DatabaseUnavailable() from exc

    async def ping(self) -> None:
        """Raises DatabaseUnavailable unless PostgreSQL answers."""
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn
