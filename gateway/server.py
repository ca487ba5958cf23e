"""Running the application: uvloop, the access log, graceful shutdown, several workers.

On SIGTERM (or SIGINT) the gateway stops accepting connections, lets requests in flight finish
for up to ``shutdown_timeout`` seconds (their bodies keep arriving), then cancels the ones still
running, which aborts their uploads (no object, no open multipart upload, no pending row), and
only then closes its pools and exits. aiohttp's own graceful shutdown is not used for the first
step because it stops reading request bodies as soon as it begins, so no upload could finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.app import create_app
from gateway.config import Settings
from gateway.edge import EdgeLimits, EdgeRunner, ensure_file_limit
from gateway.logs import AccessLogger
from gateway.metrics import Metrics, WorkerPeers, worker_app
from gateway.storage import ObjectStore

log = logging.getLogger("gateway.server")

# aiohttp's default (64 KiB) pauses the socket every other read of a large body; 256 KiB (a
# socket read's worth: reading pauses above twice that) keeps reads whole, while 32 uploads
# hold only 16 MiB unread beside the buffer budget.
READ_BUFSIZE = 256 * 1024

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


async def _serve(settings: Settings, store: ObjectStore | None, *, reuse_port: bool,
                 peers: WorkerPeers | None = None) -> None:
    app = create_app(settings, store=store)
    if peers is not None and keys.metrics in app:
        # Each worker answers its siblings' scrapes on its own socket (gateway/metrics.py).
        app[keys.worker_peers] = peers
        app.cleanup_ctx.append(_worker_metrics_socket(app[keys.metrics], peers))
    in_flight = InFlight()
    app.middlewares.append(in_flight.middleware)
    ensure_file_limit(settings.max_connections)
    runner = EdgeRunner(
        app, EdgeLimits.from_settings(settings), access_log_class=AccessLogger,
        shutdown_timeout=_FINAL_TIMEOUT, handle_signals=False, read_bufsize=READ_BUFSIZE,
    )
    await runner.setup()
    _freeze_startup_objects()
    try:
        site = web.TCPSite(
            runner, settings.host, settings.port, reuse_port=reuse_port
        )
        await site.start()
        app[keys.loop_watch].arm()  # start-up is over: from now on a stall is one
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


def serve(settings: Settings, *, store: ObjectStore | None = None) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get ``shutdown_timeout`` to finish.

    With ``workers`` above 1 this process forks that many workers, each with its own event
    loop and app on the same port (SO_REUSEPORT: the kernel spreads connections), forwards
    SIGINT/SIGTERM to them and waits; if one dies, the others are stopped too.
    ``store`` replaces S3 (the benchmark's discarding store).
    """
    if settings.workers <= 1:
        _serve_one(settings, store, reuse_port=False)
        return
    _supervise(settings, store)


def _serve_one(settings: Settings, store: ObjectStore | None, *, reuse_port: bool,
               peers: WorkerPeers | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve(settings, store, reuse_port=reuse_port, peers=peers))


def _worker_metrics_socket(metrics: Metrics, peers: WorkerPeers) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(worker_app(metrics), access_log=None, handle_signals=False)
        await runner.setup()
        await web.UnixSite(runner, str(peers.own_socket)).start()
        try:
            yield
        finally:
            await runner.cleanup()

    return ctx


def _freeze_startup_objects() -> None:
    """Move everything loaded at start (botocore's service models above all) out of the
    collector's sight: a full collection would walk it all, a pause of many milliseconds in the
    middle of requests."""
    gc.collect()
    gc.freeze()


def _supervise(settings: Settings, store: ObjectStore | None) -> None:
    # The workers' metrics sockets, private to this user, gone with the supervisor.
    with tempfile.TemporaryDirectory(prefix="packgate-workers-") as folder:
        _run_workers(settings, store, Path(folder))


def _run_workers(settings: Settings, store: ObjectStore | None, folder: Path) -> None:
    children: dict[int, int] = {}  # pid -> worker number
    for n in range(settings.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                # Each worker records its own pending uploads.
                own = settings.with_overrides(
                    instance_id=f"{settings.instance_id}-{n}",
                    health_port=None if settings.health_port is None
                    else settings.health_port + n,
                )
                _serve_one(own, store, reuse_port=True, peers=WorkerPeers(folder, n))
                code = 0
            except BaseException:
                log.exception("worker %d failed", n)
            finally:
                os._exit(code)
        children[pid] = n
    log.info("serving with %d workers", len(children), extra={"pids": list(children)})

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        n = children.pop(pid, None)
        if n is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if not stopping:
            # A worker that dies on its own leaves the port half served: stop the rest, and let
            # the process manager restart the whole service.
            log.error("worker %d exited with %d; stopping the others", n, code)
            failed = True
            forward(signal.SIGTERM, None)
    if failed:
        raise SystemExit(1)
