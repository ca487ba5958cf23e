"""One dedicated connection per process that ``LISTEN``s on a channel, reconnecting by itself.

It uses its own DSN (``GATEWAY_DATABASE_LISTEN_URL``): a pool behind PgBouncer in transaction
mode cannot LISTEN, so this connection goes straight to PostgreSQL. ``on_state(True)`` is
called only once the ``LISTEN`` is in place, ``on_state(False)`` as soon as the connection is
lost (PostgreSQL restarted, network cut, a ping unanswered), so whoever caches on the strength
of these notifications knows exactly when it may not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg

from gateway.db.pool import UNAVAILABLE

log = logging.getLogger("gateway.db.listen")


class Listener:
    def __init__(
        self, dsn: str, channel: str, *, on_message: Callable[[str], None],
        on_state: Callable[[bool], None], ping_interval: float = 5.0, timeout: float = 5.0,
        first_retry: float = 0.2, max_retry: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_message = on_message
        self._on_state = on_state
        self._ping_interval = ping_interval
        self._timeout = timeout
        self._first_retry = first_retry
        self._max_retry = max_retry
        self.connected = False

    def _set(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            log.log(logging.INFO if connected else logging.WARNING,
                    "listening on %s" if connected else "stopped listening on %s",
                    self._channel)
        self._on_state(connected)

    async def run(self) -> None:
        """Listen until cancelled; never stops on an error."""
        retry = self._first_retry
        while True:
            try:
                await self._listen_once()
                retry = self._first_retry
            except (*UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.warning("listener connection failed: %r", exc)
            finally:
                self._set(False)
            await asyncio.sleep(retry)
            retry = min(self._max_retry, retry * 2)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(
            self._dsn, timeout=self._timeout,
            server_settings={"application_name": "packgate-listen"},
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await asyncio.wait_for(conn.add_listener(self._channel, self._deliver),
                                   self._timeout)
            self._set(True)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._ping_interval)
                if not lost.is_set():
                    # A cut network shows no termination: an unanswered ping does.
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self._timeout)
        finally:
            self._set(False)
            conn.terminate()

    def _deliver(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_message(payload)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Listener]:
        task = asyncio.create_task(self.run(), name=f"listen-{self._channel}")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
