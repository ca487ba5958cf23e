"""Prometheus metrics at ``GET /metrics`` (prometheus-client).

Each process keeps its own registry (``Metrics``, in the app's state: no global, so every app
in a test has its own). Events are counted where they happen (a request answered, body bytes
read, an upload stored); what the services hold anyway (buffer budget in use, parts in flight,
uploads in progress, the pool, S3 errors, the sweeper's and the deletion queue's counts) is
read from them when scraped, so the upload path pays nothing for it.

With ``gateway serve --workers N`` every worker also answers its own registry on a Unix socket
in a folder the supervisor made (``WorkerPeers``); the worker that gets the scrape asks the
others and merges: counters, histograms and gauges summed (the instance's total), the gauges in
``_MAX_GAUGES`` by their largest value. One scrape of the port so describes the whole instance,
whichever worker the kernel hands it to. This is prometheus-client's own text format and parser,
without its multiprocess mode: that one is switched on through an environment variable at
import time and cannot read state such as the buffer budget when scraped.

Labels stay bounded: a route is its template (``/api/v4/projects/{id}/packages``), never the
path, so no id, name or token becomes a label value; methods outside HTTP's usual ones count as
``other``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.errors import Unauthorized

log = logging.getLogger("gateway.metrics")

# No ``*_created`` series: Prometheus does not need them, and they double every scrape's size.
disable_created_metrics()

_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"})
_UNMATCHED = "unmatched"
# Seconds; requests range from a cached redirect to an upload of hours.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800,
                    7200)
_UPLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200,
                   21600)
_SIZE_BUCKETS = tuple(float(2**n) for n in (10, 16, 20, 23, 26, 30, 33, 36, 40, 42))
# Gauges whose instance-wide figure is the worst worker's, not the sum.
_MAX_GAUGES = frozenset({"packgate_event_loop_lag_seconds",
                         "packgate_event_loop_max_lag_seconds",
                         # read from the database: every worker reports the same figure
                         "packgate_packages_stored_bytes", "packgate_package_files_stored",
                         "packgate_quota_used_bytes", "packgate_quota_limit_bytes",
                         "packgate_quota_used_files"})
_PEER_TIMEOUT = 2.0


class Metrics:
    """The metrics of one process. ``watch(...)`` names the state read at scrape time."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "packgate_http_requests", "HTTP requests answered, by method, route template and "
            "status (499: the client left first)", ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram(
            "packgate_http_request_duration_seconds", "Time to answer a request, by method and "
            "route template", ["method", "route"], buckets=_REQUEST_BUCKETS, registry=r)
        self.in_flight = Gauge(
            "packgate_http_requests_in_flight", "Requests being handled", registry=r)
        self.upload_bytes = Counter(
            "packgate_upload_bytes", "Bytes of upload bodies received", registry=r)
        self.download_bytes = Counter(
            "packgate_download_bytes", "Bytes of files downloaded: redirect (sent by S3 to "
            "the client, counted when redirected) or proxy (streamed by the gateway)", ["mode"],
            registry=r)
        self.upload_seconds = Histogram(
            "packgate_upload_duration_seconds", "Stored uploads: from the first body byte to "
            "the committed row", buckets=_UPLOAD_BUCKETS, registry=r)
        self.upload_size = Histogram(
            "packgate_upload_size_bytes", "Stored uploads by size", buckets=_SIZE_BUCKETS,
            registry=r)
        self.sweeps = Counter(
            "packgate_sweeper_runs", "Sweeper rounds: done, busy (another instance held the "
            "lock) or failed (the database was unavailable)", ["result"], registry=r)
        self.swept = Counter(
            "packgate_sweeper_uploads", "Stale pending uploads: aborted, or failed (the store "
            "was unavailable; tried again next round)", ["result"], registry=r)
        self._children: dict[tuple[str, str, int], Any] = {}
        self._state = _State()
        r.register(self._state)

    def watch(self, **sources: Any) -> None:
        """Objects read at scrape time: buffers, uploads (UploadStats), db, store,
        deletions, loop (the LoopWatch)."""
        self._state.sources.update(sources)

    def request_done(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.request_seconds.labels(method, route),
            )
        child[0].inc()
        child[1].observe(seconds)

    def upload_stored(self, size: int, seconds: float) -> None:
        self.upload_size.observe(size)
        self.upload_seconds.observe(seconds)

    def sweep_done(self, report: Any) -> None:
        """The sweeper's report of one round (None: it could not run)."""
        if report is None:
            self.sweeps.labels("failed").inc()
            return
        self.sweeps.labels("busy" if report.busy else "done").inc()
        if report.swept:
            self.swept.labels("aborted").inc(len(report.swept))
        if report.failed:
            self.swept.labels("failed").inc(len(report.failed))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.monotonic()
        status = 499  # the client left (or the request was cancelled) before an answer
        self.in_flight.inc()
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # only if no error middleware turned it into JSON
            status = exc.status
            raise
        finally:
            self.in_flight.dec()
            self.request_done(_method(request), route_template(request), status,
                              time.monotonic() - started)


def _method(request: web.BaseRequest) -> str:
    return request.method if request.method in _METHODS else "other"


def route_template(request: web.Request) -> str:
    """The matched route's template, or ``unmatched``: never the path itself."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else _UNMATCHED


class _State:
    """A collector over what the services already hold, read at each scrape."""

    def __init__(self) -> None:
        self.sources: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        src = self.sources
        if (buffers := src.get("buffers")) is not None:
            yield _gauge("packgate_buffer_budget_bytes", "The part buffer budget",
                         buffers.budget)
            yield _gauge("packgate_buffer_in_use_bytes", "Part buffers handed out now",
                         buffers.used)
            yield _counter("packgate_buffer_waits", "Buffer requests that waited for room "
                           "(the budget was spent: backpressure on clients)", buffers.waits)
            yield _counter("packgate_buffer_wait_seconds", "Time uploads waited for room",
                           buffers.wait_seconds)
        if (uploads := src.get("uploads")) is not None:
            yield _gauge("packgate_pending_uploads", "Uploads in progress (each holds a "
                         "pending-upload row)", uploads.in_progress)
            yield _gauge("packgate_upload_parts_in_flight", "Parts on their way to S3",
                         uploads.parts_in_flight)
        if (db := src.get("db")) is not None:
            pool = db.pool
            size, idle = pool.get_size(), pool.get_idle_size()
            yield _gauge("packgate_db_pool_connections", "PostgreSQL connections open", size)
            yield _gauge("packgate_db_pool_in_use", "PostgreSQL connections in use", size - idle)
            yield _gauge("packgate_db_pool_max", "Most PostgreSQL connections the pool opens",
                         pool.get_max_size())
        if (store := src.get("store")) is not None and hasattr(store, "errors"):
            errors = CounterMetricFamily(
                "packgate_s3_errors", "S3 calls that failed after their retries (or their "
                "deadline), by operation", labels=["operation"])
            for operation, count in sorted(store.errors.items()):
                errors.add_metric([operation], count)
            yield errors
        if (deletions := src.get("deletions")) is not None:
            queue = CounterMetricFamily(
                "packgate_deletion_queue_actions", "Objects of deleted files: deleted from S3, "
                "or failed and postponed", labels=["result"])
            queue.add_metric(["deleted"], deletions.deleted)
            queue.add_metric(["failed"], deletions.failed)
            yield queue
        if (quotas := src.get("quotas")) is not None:
            yield from _quota_metrics(quotas)
        if (loop := src.get("loop")) is not None:
            state = loop.state()  # gateway/loopwatch.py
            yield _gauge("packgate_event_loop_lag_seconds", "How late the event loop last ran "
                         "its 100 ms timer (a busy loop delays every request)", state.lag)
            yield _gauge("packgate_event_loop_max_lag_seconds", "The worst lag since the "
                         "process started", state.max_lag)
            yield _counter("packgate_event_loop_stalls", "Times the event loop did not run for "
                           "GATEWAY_LOOP_STALL_SECONDS (logged with its stack)", state.stalls)


def _quota_metrics(stats: Any) -> Iterator[Metric]:
    """Storage quotas (gateway/governance/quotas.py): refusals counted by this process, and
    the usage last read (at most 30 s old, read by the scrape): every project and group with a
    limit of its own (bounded by what administrators configured), and the instance's total."""
    refusals = CounterMetricFamily(
        "packgate_quota_refusals", "Uploads refused by a storage quota, by the quota's scope "
        "(project, group) and stage (early: from Content-Length; commit)",
        labels=["scope", "stage"])
    for (scope, stage), count in sorted(stats.refusals.items()):
        refusals.add_metric([scope, stage], count)
    yield refusals
    if stats.total is None:
        return
    yield _gauge("packgate_packages_stored_bytes", "Bytes of all package files",
                 stats.total.bytes)
    yield _gauge("packgate_package_files_stored", "Package files stored", stats.total.files)
    used = GaugeMetricFamily("packgate_quota_used_bytes", "Bytes held by a project or group "
                             "with a storage quota of its own", labels=["scope", "id"])
    limit = GaugeMetricFamily("packgate_quota_limit_bytes", "Its byte limit",
                              labels=["scope", "id"])
    files = GaugeMetricFamily("packgate_quota_used_files", "Files held by a project or group "
                              "with a storage quota of its own", labels=["scope", "id"])
    for scope, holder_id, max_bytes, _max_files, usage in stats.limited:
        used.add_metric([scope, str(holder_id)], usage.bytes)
        files.add_metric([scope, str(holder_id)], usage.files)
        if max_bytes is not None:
            limit.add_metric([scope, str(holder_id)], max_bytes)
    yield used
    yield limit
    yield files


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


# --- several workers: one answer for the instance ----------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerPeers:
    """Where the workers of one ``gateway serve --workers N`` answer their own metrics."""

    folder: Path
    worker: int

    @property
    def own_socket(self) -> Path:
        return self.folder / f"worker-{self.worker}.sock"

    def others(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("worker-*.sock") if p != self.own_socket)


async def scrape_peers(peers: WorkerPeers) -> tuple[list[str], int]:
    """The other workers' expositions, and how many did not answer in time."""

    async def one(path: Path) -> str | None:
        try:
            connector = aiohttp.UnixConnector(path=str(path))
            timeout = aiohttp.ClientTimeout(total=_PEER_TIMEOUT)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.get("http://worker/metrics") as resp,
            ):
                resp.raise_for_status()
                return await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("worker metrics unavailable: %s", exc, extra={"socket": path.name})
            return None

    answers = await asyncio.gather(*(one(p) for p in peers.others()))
    return [a for a in answers if a is not None], sum(a is None for a in answers)


def merge_expositions(texts: Iterable[str], missing: int = 0) -> bytes:
    """Several processes' expositions as one: samples with equal names and labels summed
    (``_MAX_GAUGES`` by their maximum, ``_created`` by the earliest)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    workers = 0
    for text in texts:
        workers += 1
        for fam in text_string_to_metric_families(text):
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type)
                values[fam.name] = {}
            into = values[fam.name]
            for sample in fam.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = into.get(key)
                if old is None:
                    into[key] = sample.value
                elif sample.name.endswith("_created"):
                    into[key] = min(old, sample.value)
                elif fam.name in _MAX_GAUGES:
                    into[key] = max(old, sample.value)
                else:
                    into[key] = old + sample.value
    for name, fam in families.items():
        for (sample_name, labels), value in values[name].items():
            fam.add_sample(sample_name, dict(labels), value)
    workers_family = GaugeMetricFamily(
        "packgate_workers", "Worker processes whose metrics this answer holds", value=workers)
    missing_family = GaugeMetricFamily(
        "packgate_workers_missing", "Worker processes that did not answer this scrape",
        value=missing)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([*families.values(), workers_family, missing_family]))
    return generate_latest(registry)


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


# --- handlers ---------------------------------------------------------------------------------


def check_token(request: web.Request, token: str | None) -> None:
    """With ``GATEWAY_METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <it>``."""
    if token is None:
        return
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                             token.encode()):
        raise Unauthorized(challenge='Bearer realm="metrics"')


async def exposition_for(metrics: Metrics, peers: WorkerPeers | None) -> bytes:
    own = metrics.exposition()
    if peers is None:
        return own
    others, missing = await scrape_peers(peers)
    return merge_expositions([own.decode(), *others], missing)


def text_response(body: bytes) -> web.Response:
    # The classic text format: every Prometheus (and the names used here) reads it.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def worker_app(metrics: Metrics) -> web.Application:
    """What a worker answers its siblings on its Unix socket: its own registry only."""

    async def own(request: web.Request) -> web.Response:
        return text_response(metrics.exposition())

    app = web.Application()
    app.router.add_get("/metrics", own)
    return app
