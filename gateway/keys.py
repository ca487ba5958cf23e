"""Typed application state (``web.AppKey``), declared in one place."""

from __future__ import annotations

from aiohttp import web

from gateway.auth import Authenticator
from gateway.buffers import BufferPool
from gateway.config import Settings
from gateway.db.pool import Database
from gateway.deletions import DeletionWorker
from gateway.governance.quotas import QuotaStats
from gateway.hashing import HashPools
from gateway.identity.context import Services
from gateway.loopwatch import LoopWatch
from gateway.metrics import Metrics, WorkerPeers
from gateway.readiness import Readiness
from gateway.storage import ObjectStore
from gateway.uploads import UploadContext

settings = web.AppKey("settings", Settings)
db = web.AppKey("db", Database)
store = web.AppKey("store", ObjectStore)
authenticator = web.AppKey("authenticator", Authenticator)
hash_pools = web.AppKey("hash_pools", HashPools)
buffers = web.AppKey("buffers", BufferPool)
uploads = web.AppKey("uploads", UploadContext)
deletions = web.AppKey("deletions", DeletionWorker)
services = web.AppKey("services", Services)
metrics = web.AppKey("metrics", Metrics)  # absent with GATEWAY_METRICS=false
# Set by `gateway serve --workers N`: where the other workers answer their metrics.
worker_peers = web.AppKey("worker_peers", WorkerPeers)
readiness = web.AppKey("readiness", Readiness)
loop_watch = web.AppKey("loop_watch", LoopWatch)
quota_stats = web.AppKey("quota_stats", QuotaStats)
