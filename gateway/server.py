"""Running the application: uvloop, the access log, graceful shutdown."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.logs import AccessLogger


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get ``shutdown_timeout`` to finish."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        shutdown_timeout=settings.shutdown_timeout,
        print=None,
        reuse_port=settings.workers > 1,
    )
