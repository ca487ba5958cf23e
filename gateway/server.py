"""Running the application: uvloop, the access log, graceful shutdown, several workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal

from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.logs import AccessLogger
from gateway.storage import ObjectStore

log = logging.getLogger("gateway.server")

# aiohttp's default (64 KiB) pauses the socket every other read of a large body; 256 KiB (a
# socket read's worth: reading pauses above twice that) keeps reads whole, while 32 uploads
# hold only 16 MiB unread beside the buffer budget.
READ_BUFSIZE = 256 * 1024


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


def _serve_one(settings: Settings, store: ObjectStore | None, *, reuse_port: bool) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = create_app(settings, store=store)
    app.on_startup.append(_freeze_startup_objects)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        shutdown_timeout=settings.shutdown_timeout,
        print=None,
        reuse_port=reuse_port,
        read_bufsize=READ_BUFSIZE,
    )


async def _freeze_startup_objects(app: web.Application) -> None:
    """Move everything loaded at start (botocore's service models above all) out of the
    collector's sight: a full collection would walk it all, a pause of many milliseconds in the
    middle of requests."""
    gc.collect()
    gc.freeze()


def _supervise(settings: Settings, store: ObjectStore | None) -> None:
    children: dict[int, int] = {}  # pid -> worker number
    for n in range(settings.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                # Each worker records its own pending uploads.
                own = settings.with_overrides(instance_id=f"{settings.instance_id}-{n}")
                _serve_one(own, store, reuse_port=True)
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
