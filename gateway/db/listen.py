"""One dedicated connection per process that ``LISTEN``s on a channel, reconnecting by itself.

It uses its own DSN (``GATEWAY_DATABASE_LISTEN_URL``): a pool behind PgBouncer in transaction
mode cannot LISTEN, so this connection goes straight to PostgreSQL. ``on_state(True)`` is
called only once notifications are known to arrive, ``on_state(False)`` as soon as that is no
longer known (PostgreSQL restarted, network cut, a probe unanswered), so whoever caches on the
strength of these notifications knows exactly when it may not.

The probe is a NOTIFY sent on a channel of this listener's own, through the pool (``send``),
that the listening connection must hear: it proves the path every change takes. A plain
``SELECT 1``, or a NOTIFY sent on the listening connection itself, passes through a PgBouncer in
transaction mode that would then drop every notification sent from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

log = logging.getLogger("gateway.db.listen")


class Listener:
    def __init__(
        self, dsn: str, channel: str, *, on_message: Callable[[str], None],
        on_state: Callable[[bool], None], send: Callable[[str, str], Awaitable[None]],
        ping_interval: float = 5.0, timeout: float = 5.0, first_retry: float = 0.2,
        max_retry: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._send = send
        self._channel = channel
        self._on_message = on_message
        self._on_state = on_state
        self._ping_interval = ping_interval
        self._timeout = timeout
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._probe_channel = f"{channel}_probe_{secrets.token_hex(6)}"
        self._probes: dict[str, asyncio.Future[None]] = {}
        self.connected = False
        self._stopping = False

    def _set(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            level = logging.INFO if connected or self._stopping else logging.WARNING
            log.log(level, "listening on %s" if connected else "stopped listening on %s",
                    self._channel)
        self._on_state(connected)

    async def run(self) -> None:
        """Listen until cancelled; never stops on an error."""
        retry = self._first_retry
        while True:
            try:
                await self._listen_once()
                retry = self._first_retry
            except Exception as exc:  # the database or the pool away: retry, never stop
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
            await asyncio.wait_for(conn.add_listener(self._probe_channel, self._answer),
                                   self._timeout)
            await self._probe(conn)
            self._set(True)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._ping_interval)
                if not lost.is_set():
                    # A cut network shows no termination: an unanswered probe does.
                    await self._probe(conn)
        finally:
            self._set(False)
            for waiter in self._probes.values():
                waiter.cancel()
            self._probes.clear()
            conn.terminate()

    async def _probe(self, _conn: asyncpg.Connection) -> None:
        """Raises TimeoutError unless a NOTIFY sent now comes back within the timeout."""
        nonce = secrets.token_hex(8)
        waiter = asyncio.get_running_loop().create_future()
        self._probes[nonce] = waiter
        try:
            async with asyncio.timeout(self._timeout):
                await self._send(self._probe_channel, nonce)
                await waiter
        finally:
            self._probes.pop(nonce, None)

    def _answer(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        waiter = self._probes.get(payload)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _deliver(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_message(payload)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Listener]:
        task = asyncio.create_task(self.run(), name=f"listen-{self._channel}")
        try:
            yield self
        finally:
            self._stopping = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
