"""Typed application state (``web.AppKey``), declared in one place."""

from __future__ import annotations

from aiohttp import web

from gateway.auth import Authenticator
from gateway.buffers import BufferPool
from gateway.config import Settings
from gateway.db.pool import Database
from gateway.deletions import DeletionWorker
from gateway.hashing import HashPools
from gateway.loopwatch import LoopWatch
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
loop_watch = web.AppKey("loop_watch", LoopWatch)
