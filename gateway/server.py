"""Running the application: uvloop, the access log, graceful shutdown.

On SIGTERM (or SIGINT) the gateway stops accepting connections, lets requests in flight finish
for up to ``shutdown_timeout`` seconds (their bodies keep arriving), then cancels the ones still
running, which aborts their uploads (no object, no open multipart upload, no pending row), and
only then closes its pools and exits. aiohttp's own graceful shutdown is not used for the first
step because it stops reading request bodies as soon as it begins, so no upload could finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.logs import AccessLogger

log = logging.getLogger("gateway.server")

# After the deadline: how long cancelled uploads get to abort (S3 and database calls), and then
# how long aiohttp waits for the last answers to be written.
_ABORT_GRACE = 15.0
_FINAL_TIMEOUT = 2.0


class InFlight:
    """The requests being handled, so shutdown can wait for them or cancel them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float) -> bool:
        """True when no request is left within ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        return self._idle.is_set()

    async def cancel_all(self, grace: float) -> None:
        """Cancel every request still running and give their clean-up ``grace`` seconds."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)


async def _serve(settings: Settings) -> None:
    app = create_app(settings)
    in_flight = InFlight()
    app.middlewares.append(in_flight.middleware)
    runner = web.AppRunner(
        app, access_log_class=AccessLogger, shutdown_timeout=_FINAL_TIMEOUT,
        handle_signals=False,
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.host, settings.port, reuse_port=settings.workers > 1
        )
        await site.start()
        log.info("serving", extra={"host": settings.host, "port": settings.port})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down", extra={"in_flight": len(in_flight)})
        await site.stop()  # no new connections; open ones keep streaming
        if not await in_flight.wait_idle(settings.shutdown_timeout):
            log.warning("aborting requests still running at the deadline",
                        extra={"count": len(in_flight)})
            await in_flight.cancel_all(_ABORT_GRACE)
    finally:
        await runner.cleanup()


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get ``shutdown_timeout`` to finish."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve(settings))
