"""Receiving an upload: body → part buffers → hashing → object store, memory bounded.

The body is read in whatever chunks the socket delivers and copied into reused part buffers.
A full part is hashed and sent while the next one is read, with at most ``parts_in_flight``
parts on their way to S3. A body smaller than one part goes up as one PutObject. Every part
buffer of the process comes from one budget; an upload that finds it spent waits, which stops
reading its socket and so pushes back on the client.

Anything that fails before the object is complete aborts it: no object and no open multipart
upload are left, and the pending-upload row is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.config import GiB, MiB, Settings, TiB
from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import BadRequest, ClientGone, RequestTimeout
from gateway.hashing import Digests, Hasher, HashPools
from gateway.storage import ObjectStore, PartSink

log = logging.getLogger("gateway.uploads")

MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * TiB
MAX_PART_SIZE = 5 * GiB
# With an unknown length, the part size doubles every this many parts: 10 steps of 1,000 parts
# from 8 MiB reach 8 TiB, above S3's 5 TiB object limit, with no part above 4 GiB.
_PARTS_PER_STEP = 1_000
# 10 doubling steps hold 1,023 x 1,000 first parts: below 5.2 MiB they fall short of 5 TiB, so
# an unknown length never starts below this (6 MiB: 6 TiB in all).
_UNKNOWN_MIN_BASE = -(-MAX_OBJECT_SIZE // (1_023 * _PARTS_PER_STEP * MiB)) * MiB
_CLEANUP_TIMEOUT = 10.0


def part_size_for(part_number: int, size: int | None, base: int) -> int:
    """Size of part ``part_number`` (from 1) so that any object up to 5 TiB fits in 10,000 parts.

    A known size gets one even part size, rounded up to whole MiB. An unknown size (chunked
    body) starts at ``base`` (at least 6 MiB) and doubles every 1,000 parts.
    """
    if size is not None:
        needed = -(-size // MAX_PARTS)
        return max(base, -(-needed // MiB) * MiB)
    step = (part_number - 1) // _PARTS_PER_STEP
    return min(max(base, _UNKNOWN_MIN_BASE) << step, MAX_PART_SIZE)


class BodyStream(Protocol):
    """What the upload needs of a request body (aiohttp's StreamReader has it). A body may also
    offer ``readchunk() -> bytes``: one received piece, ``b""`` only at the end (no copy)."""

    async def readany(self) -> bytes: ...


class FileTooLarge(BadRequest):
    def __init__(self) -> None:
        super().__init__("File is too large")


def check_declared_size(content_length: int | None, max_file_size: int) -> None:
    """GitLab rejects ``size >= limit`` (0 disables the limit); refused before any body byte."""
    if content_length is not None and max_file_size > 0 and content_length >= max_file_size:
        raise FileTooLarge()


class BufferPool:
    """Part buffers shared by every upload of a process, within a byte budget.

    ``acquire`` waits while the budget is spent; a buffer larger than the whole budget is still
    granted when nothing else is out, so no upload can wait forever.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.peak = 0
        # Acquisitions that had to wait for room, and the seconds spent waiting (metrics).
        self.waits = 0
        self.wait_seconds = 0.0
        self._free: dict[int, list[bytearray]] = {}
        self._free_bytes = 0
        self._cond = asyncio.Condition()

    async def acquire(self, size: int) -> bytearray:
        async with self._cond:
            if not (self.used == 0 or self.used + size <= self.budget):
                self.waits += 1
                since = time.monotonic()
                await self._cond.wait_for(
                    lambda: self.used == 0 or self.used + size <= self.budget
                )
                self.wait_seconds += time.monotonic() - since
            self.used += size
            self.peak = max(self.peak, self.used)
            free = self._free.get(size)
            if free:
                self._free_bytes -= size
                return free.pop()
            # Make room: drop idle buffers of other sizes before allocating.
            for other in list(self._free):
                while self._free[other] and self.used + self._free_bytes > self.budget:
                    self._free[other].pop()
                    self._free_bytes -= other
            return bytearray(size)

    def drop_idle(self) -> None:
        """Forget the idle buffers kept for reuse (the app is shutting down)."""
        self._free.clear()
        self._free_bytes = 0

    async def release(self, buf: bytearray, *, reuse: bool = True) -> None:
        """Return a buffer. ``reuse=False`` when a worker thread may still read it."""
        async with self._cond:
            self.used -= len(buf)
            if reuse and self.used + self._free_bytes + len(buf) <= self.budget:
                self._free.setdefault(len(buf), []).append(buf)
                self._free_bytes += len(buf)
            self._cond.notify_all()


@dataclass(slots=True)
class UploadStats:
    """What one process's uploads are doing now, as plain counts the metrics read."""

    in_progress: int = 0
    parts_in_flight: int = 0


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    digests: Digests
    parts: int = 0
    # Wall time spent receiving and sending parts, and completing the multipart upload.
    parts_seconds: float = 0.0
    complete_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class UploadLimits:
    max_file_size: int
    part_size: int
    parts_in_flight: int
    body_read_timeout: float
    # Cleaning up after a failure waits at most this long (S3 may be the failure); what is
    # left then is the sweeper's, so the client's error is not held up.
    cleanup_timeout: float = _CLEANUP_TIMEOUT

    @classmethod
    def from_settings(cls, s: Settings) -> UploadLimits:
        return cls(s.max_file_size, s.part_size, s.parts_in_flight, s.body_read_timeout,
                   min(_CLEANUP_TIMEOUT, s.s3_request_deadline))


class _Reader:
    """Fills part buffers from the body; cuts off a client that stops sending.

    A body with ``readchunk`` hands over each received piece as it is; ``readany`` joins all
    queued pieces into a new bytes first, one more copy of every byte.
    """

    def __init__(self, body: BodyStream, timeout: float) -> None:
        self._read = getattr(body, "readchunk", None) or body.readany
        self._timeout = timeout
        self._pending: memoryview | None = None
        self.eof = False

    async def fill(self, buf: bytearray, want: int) -> int:
        view = memoryview(buf)
        n = 0
        if self._pending is not None:
            take = min(len(self._pending), want)
            view[:take] = self._pending[:take]
            self._pending = self._pending[take:] if take < len(self._pending) else None
            n = take
        read = self._read
        while n < want and not self.eof:
            try:
                async with asyncio.timeout(self._timeout):
                    chunk = await read()
            except TimeoutError:
                raise RequestTimeout() from None
            except OSError as exc:
                raise ClientGone(str(exc)) from exc
            size = len(chunk)
            if not size:
                self.eof = True
                break
            if size <= want - n:
                view[n : n + size] = chunk
                n += size
            else:
                take = want - n
                rest = memoryview(chunk)
                view[n:want] = rest[:take]
                self._pending = rest[take:]
                n = want
        return n


async def stream_to_store(
    body: BodyStream,
    store: ObjectStore,
    key: str,
    *,
    size: int | None,
    limits: UploadLimits,
    buffers: BufferPool,
    pools: HashPools,
    on_multipart: Callable[[str], Awaitable[None]] | None = None,
    on_cleaned: Callable[[], Awaitable[None]] | None = None,
    stats: UploadStats | None = None,
) -> StoredObject:
    """Stream ``body`` into ``key``; the object exists only if this returns.

    ``on_multipart`` receives the upload id once a multipart upload is started (to record it),
    ``on_cleaned`` runs after a failure once nothing is left in the store (when the store
    cannot be reached, it does not run, and the sweeper finishes the job later).
    """
    reader = _Reader(body, limits.body_read_timeout)
    hasher = Hasher(pools)
    sink: PartSink | None = None
    in_flight: set[asyncio.Task[None]] = set()
    # Buffers this upload holds, by identity: bytearrays compare by content, and equal parts
    # (a file of zeros) or a reused buffer still holding an equal part must not be mixed up.
    held: dict[int, bytearray] = {}
    total = 0
    number = 0
    ok = False
    reached_store = False  # a request that may have created something was sent
    started = time.monotonic()
    counts = stats or UploadStats()

    async def send(
        part: int, buf: bytearray, view: memoryview, hashed: asyncio.Future[None]
    ) -> None:
        assert sink is not None
        counts.parts_in_flight += 1
        try:
            crc = await pools.crc32(view)
            await sink.write_part(part, view, crc)
        finally:
            counts.parts_in_flight -= 1
        await hashed
        del held[id(buf)]
        await buffers.release(buf)

    try:
        while True:
            want = part_size_for(number + 1, size, limits.part_size)
            buf = await buffers.acquire(want)
            held[id(buf)] = buf
            n = await reader.fill(buf, want)
            total += n
            if limits.max_file_size > 0 and total >= limits.max_file_size:
                raise FileTooLarge()
            view = memoryview(buf)[:n]
            if number == 0 and n < want:
                # The whole body fits in one part: a single PutObject.
                crc, _ = await asyncio.gather(pools.crc32(view), hasher.feed(view))
                reached_store = True
                await store.put_object(key, view, crc)
                break
            if n == 0:
                del held[id(buf)]
                await buffers.release(buf)
                break
            if sink is None:
                reached_store = True
                sink = await store.open_sink(key)
                if on_multipart is not None:
                    await on_multipart(sink.upload_id)
            while len(in_flight) >= limits.parts_in_flight:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    in_flight.discard(task)
                    task.result()
            number += 1
            if number > MAX_PARTS:
                raise FileTooLarge()
            task = asyncio.create_task(send(number, buf, view, hasher.feed(view)))
            in_flight.add(task)
            if n < want:
                break
        if in_flight:
            await asyncio.gather(*in_flight)
            in_flight.clear()
        digests = await hasher.digests()
        received = time.monotonic()
        if sink is not None:
            await sink.commit()
        ok = True
        return StoredObject(
            key, total, digests, number, received - started, time.monotonic() - received
        )
    finally:
        if not ok:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            await hasher.cancel()
            await asyncio.shield(
                _clean_up(store, key, sink, reached_store, on_cleaned, limits.cleanup_timeout)
            )
        for buf in held.values():
            # On failure a worker thread may still be reading: drop rather than reuse.
            await buffers.release(buf, reuse=ok)
        held.clear()


async def _clean_up(
    store: ObjectStore,
    key: str,
    sink: PartSink | None,
    reached_store: bool,
    on_cleaned: Callable[[], Awaitable[None]] | None,
    timeout: float,
) -> None:
    try:
        async with asyncio.timeout(timeout):
            if sink is not None:
                await sink.abort()
            elif reached_store:
                # A PutObject or CreateMultipartUpload may have reached S3 even though its
                # answer did not reach us (a timeout): remove what it may have made.
                await store.delete(key)
                for upload in await store.list_open_uploads(prefix=key):
                    if upload.key == key:
                        await store.abort_upload(key, upload.upload_id)
    except Exception as exc:
        log.warning("could not clean up %s now, the sweeper will: %s", key,
                    str(exc) or type(exc).__name__)
        return
    if on_cleaned is not None:
        try:
            await on_cleaned()
        except Exception as exc:
            log.warning("could not drop the pending row of %s, the sweeper will: %s", key, exc)


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds while the upload runs (``async with``).

    It runs beside the stream rather than between parts, so a slow client that takes longer
    than the stale window to fill one part is still seen as alive, and a slow database never
    holds up the body.
    """

    def __init__(self, beat: Callable[[], Awaitable[None]], interval: float) -> None:
        self._beat = beat
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._beat()
            except Exception as exc:
                # A short database blip must not kill a long upload; the commit decides.
                log.warning("heartbeat failed: %s", exc)

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass(frozen=True, slots=True)
class UploadContext:
    """What every upload of a process shares."""

    db: Database
    store: ObjectStore
    buffers: BufferPool
    pools: HashPools
    limits: UploadLimits
    instance: str
    heartbeat_interval: float
    stats: UploadStats = field(default_factory=UploadStats)


async def receive(
    ctx: UploadContext, body: BodyStream, key: str, *, project_id: int, size: int | None
) -> StoredObject:
    """Record a pending upload of ``key``, then stream the body into it.

    The pending row outlives a crash of this process, so the sweeper can abort what was left;
    it is dropped here on failure once the store is clean, and by the commit on success.
    """
    async with ctx.db.connection() as conn:
        await q.insert_pending_upload(conn, key, ctx.instance, project_id)

    async def record_upload_id(upload_id: str) -> None:
        async with ctx.db.connection() as conn:
            await q.set_pending_upload_id(conn, key, upload_id)

    async def beat() -> None:
        async with ctx.db.connection() as conn:
            await q.heartbeat_pending_upload(conn, key)

    async def drop_pending() -> None:
        async with ctx.db.connection() as conn:
            await q.delete_pending_upload(conn, key)

    ctx.stats.in_progress += 1
    try:
        async with Heartbeat(beat, ctx.heartbeat_interval):
            stored = await stream_to_store(
                body,
                ctx.store,
                key,
                size=size,
                limits=ctx.limits,
                buffers=ctx.buffers,
                pools=ctx.pools,
                on_multipart=record_upload_id,
                on_cleaned=drop_pending,
                stats=ctx.stats,
            )
    finally:
        ctx.stats.in_progress -= 1
    log.info(
        "upload stored",
        extra={
            "bytes": stored.size,
            "parts": stored.parts,
            "parts_s": round(stored.parts_seconds, 4),
            "complete_s": round(stored.complete_seconds, 4),
        },
    )
    return stored
