"""The application factory and its resources, one cleanup context each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

from gateway import keys, requestids
from gateway.api import forwarded, setup_routes
from gateway.auth import Authenticator
from gateway.buffers import BufferPool
from gateway.config import Settings
from gateway.db.identity import changes
from gateway.db.listen import Listener
from gateway.db.migrate import latest_version
from gateway.db.pool import Database
from gateway.deletions import DeletionWorker
from gateway.errors import middleware as error_middleware
from gateway.governance import retention
from gateway.governance.quotas import QuotaStats
from gateway.hashing import HashPools
from gateway.identity.context import Services
from gateway.loopwatch import HealthListener, LoopWatch
from gateway.metrics import Metrics
from gateway.readiness import Readiness
from gateway.storage import ObjectStore
from gateway.storage.s3 import S3Store
from gateway.sweeper import run_sweeper
from gateway.uploads import UploadContext, UploadLimits

# Request headers beyond this are refused by aiohttp with 400 (tokens and paths fit easily).
MAX_HEADER_SIZE = 16 * 1024


def create_app(settings: Settings, *, store: ObjectStore | None = None) -> web.Application:
    """The gateway as an aiohttp application. ``store`` replaces S3 (tests, benchmarks)."""
    metrics = Metrics() if settings.metrics else None
    middlewares = [requestids.middleware(
        lambda request: forwarded.peer_is_trusted(request, settings.trusted_proxies)
    )]
    if (client := forwarded.middleware(settings.trusted_proxies)) is not None:
        middlewares.append(client)
    if metrics is not None:
        middlewares.append(metrics.middleware)  # sees the statuses errors.middleware renders
    middlewares.append(error_middleware)
    app = web.Application(middlewares=middlewares, handler_args={
        "max_field_size": MAX_HEADER_SIZE,
        "max_line_size": MAX_HEADER_SIZE,
        # After an answer to an unread body (refused upload, timeout), aiohttp reads and
        # discards the rest before closing, 10 s by default; one second lets the client read
        # the answer before the close, without taking in gigabytes for nothing.
        "lingering_time": 1.0,
    })
    app[keys.settings] = settings
    app[keys.quota_stats] = QuotaStats()
    if metrics is not None:
        app[keys.metrics] = metrics
    app.on_response_prepare.append(requestids.on_response_prepare)
    app.cleanup_ctx.append(_loop_watch)  # stopped last
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_s3_store if store is None else _given_store(store))
    app.cleanup_ctx.append(_upload_pipeline)
    app.cleanup_ctx.append(_deletion_worker)
    app.cleanup_ctx.append(_identity)
    app.cleanup_ctx.append(_observed)
    app.cleanup_ctx.append(_retention)
    app.cleanup_ctx.append(_sweeper)  # stopped first
    setup_routes(app)
    if settings.ui:
        # Imported only when on: Jinja2 and the templates cost a process about 9 MiB.
        from gateway.ui import setup as setup_ui

        setup_ui(app)  # /-/ui/, and / for browsers
    return app


async def _loop_watch(app: web.Application) -> AsyncIterator[None]:
    """The event loop watched from a thread, and health answered from one if asked."""
    settings = app[keys.settings]
    # Armed by the server once it serves (start-up may hold the loop for a while).
    async with LoopWatch(settings.loop_stall_seconds, armed=False) as watch:
        app[keys.loop_watch] = watch
        if settings.health_port is None:
            yield
            return
        with HealthListener(watch, settings.host, settings.health_port):
            yield


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings]
    async with Database.open(settings) as db:
        app[keys.db] = db
        app[keys.authenticator] = Authenticator(db, settings.token_cache_seconds)
        yield


async def _s3_store(app: web.Application) -> AsyncIterator[None]:
    async with S3Store.open(app[keys.settings]) as store:
        app[keys.store] = store
        yield


def _given_store(store: ObjectStore):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[keys.store] = store
        yield

    return ctx


async def _upload_pipeline(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings]
    pools = HashPools()
    buffers = BufferPool(settings.buffer_budget, wait_timeout=settings.buffer_wait_timeout)
    app[keys.hash_pools] = pools
    app[keys.buffers] = buffers
    app[keys.uploads] = UploadContext(
        db=app[keys.db],
        store=app[keys.store],
        buffers=buffers,
        pools=pools,
        limits=UploadLimits.from_settings(settings),
        instance=settings.instance_id,
        heartbeat_interval=max(1.0, settings.stale_upload_seconds / 4),
    )
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            pools.shutdown()
        # Idle part buffers go now, not whenever the collector finds the app's cycles.
        buffers.drop_idle()


async def _deletion_worker(app: web.Application) -> AsyncIterator[None]:
    async with DeletionWorker(app[keys.db], app[keys.store]).running() as worker:
        app[keys.deletions] = worker
        yield


async def _identity(app: web.Application) -> AsyncIterator[None]:
    """The identity services, and the listener that keeps this process's token cache honest:
    every gateway process drops its cached tokens when any of them changes identity, and
    serves nothing from the cache while it cannot hear of changes (``TokenCache``)."""
    settings = app[keys.settings]
    authenticator = app[keys.authenticator]
    app[keys.services] = Services(
        db=app[keys.db],
        max_token_lifetime_days=settings.max_token_lifetime_days,
        allow_guest_pull=settings.allow_guest_pull,
        forget_tokens=authenticator.forget_cached,
        wake_deletions=app[keys.deletions].wake,
    )
    cache = authenticator.cache
    if not cache.enabled:
        yield
        return
    db = app[keys.db]

    async def send(channel: str, payload: str) -> None:
        await changes.send(db, channel, payload)

    listener = Listener(settings.listen_url, changes.CHANNEL, on_message=cache.invalidate,
                        on_state=cache.set_live, send=send, timeout=settings.db_acquire_timeout)
    async with listener.running():
        yield


async def _observed(app: web.Application) -> AsyncIterator[None]:
    """Readiness, and what the metrics read of the other resources when scraped."""
    app[keys.readiness] = Readiness(app[keys.db], app[keys.store],
                                    schema_needed=latest_version())
    if (metrics := app.get(keys.metrics)) is not None:
        metrics.watch(db=app[keys.db], store=app[keys.store], buffers=app[keys.buffers],
                      uploads=app[keys.uploads].stats, deletions=app[keys.deletions],
                      loop=app[keys.loop_watch], quotas=app[keys.quota_stats])
    yield


@contextlib.asynccontextmanager
async def _background(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """A task for the app's lifetime, cancelled (and awaited) at cleanup."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """Every instance runs the retention policies every GATEWAY_RETENTION_INTERVAL; a
    PostgreSQL advisory lock makes one of them the leader of each round."""
    interval = app[keys.settings].retention_interval
    if interval <= 0:
        yield
        return
    async with _background(retention.run_periodically(
            app[keys.db], interval, app[keys.deletions].wake), "retention"):
        yield


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """Every instance sweeps stale pending uploads (one at a time, under an advisory lock)."""
    settings = app[keys.settings]
    metrics = app.get(keys.metrics)
    async with _background(run_sweeper(
            app[keys.db], app[keys.store], settings.stale_upload_seconds,
            metrics.sweep_done if metrics is not None else None), "sweeper"):
        yield
