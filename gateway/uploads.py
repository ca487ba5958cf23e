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
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.buffers import SLOW_FILL_SECONDS, Buffer, BufferBusy, BufferPool, Fill, allocate
from gateway.config import GiB, MiB, Settings, TiB
from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import BadRequest, ClientGone, RequestTimeout, ServiceUnavailable
from gateway.hashing import Digests, Hasher, HashPools
from gateway.storage import ObjectNotFound, ObjectStore, PartSink

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
    offer ``readchunk() -> bytes``: one received piece, ``b""`` only at the end (no copy), and
    ``direct() -> DirectSource | None``: the rest of the body received straight into a part
    buffer (None: it cannot be)."""

    async def readany(self) -> bytes: ...


class DirectSource(Protocol):
    """A body that the socket writes straight into the buffer given to ``aim``
    (gateway/receiver.py); its pieces before and after are read as ``readchunk``'s."""

    last_data: float  # time.monotonic() of the last bytes received

    @property
    def ended(self) -> bool: ...

    @property
    def filled(self) -> int: ...

    def aim(self, view: memoryview) -> None: ...

    def release(self) -> int: ...

    async def wait_filled(self) -> None: ...


class FileTooLarge(BadRequest):
    def __init__(self) -> None:
        super().__init__("File is too large")


class UploadInterrupted(ServiceUnavailable):
    """The multipart upload vanished under a live upload (S3's NoSuchUpload): the sweeper
    aborted it because the heartbeat could not be written for a stale window, e.g. while
    PostgreSQL was down. Nothing of it is left; a retry works."""

    def __init__(self) -> None:
        super().__init__("the upload was interrupted, please retry")


def check_declared_size(content_length: int | None, max_file_size: int) -> None:
    """GitLab rejects ``size >= limit`` (0 disables the limit); refused before any body byte."""
    if content_length is not None and max_file_size > 0 and content_length >= max_file_size:
        raise FileTooLarge()


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


# An upload takes a part buffer only once this much of the part has arrived (or the body has
# ended, or the part is smaller): until then it holds the received pieces as they are, outside
# the budget, as aiohttp itself holds unread bytes. A body that ends within it gets a buffer of
# its own size (or none: one received piece is sent as it is), and a client that connects and
# sends a byte now and then holds no part buffer at all.
STAGE_BYTES = 256 * 1024
# A part buffer its client fills too slowly (``BufferPool.too_slow``: judged after
# SLOW_FILL_SECONDS, against the process's other fills) while other uploads wait for room is
# given back: the bytes in it are copied out (they stay charged) and the upload, slow from then
# on, queues again behind every other (see buffers.py). Fast clients never meet this, nor do
# clients that are merely as slow as the busy process lets them all be.


@dataclass(slots=True)
class Part:
    """Bytes of the body on their way to the store, and what holds them in memory."""

    view: memoryview
    buf: Buffer | None  # None: the view is one received piece, charged as staged bytes

    def give_back(self, buffers: BufferPool, *, reuse: bool = True) -> None:
        if self.buf is not None:
            buffers.release(self.buf, reuse=reuse)
        else:
            buffers.unreserve(len(self.view))


class PartReader:
    """Reads the body into parts, within the process's buffer budget; cuts off a client that
    stops sending for ``timeout`` seconds.

    A body with ``readchunk`` hands over each received piece as it is; ``readany`` joins all
    queued pieces into a new bytes first, one more copy of every byte. Either way each byte
    is copied once, into its part buffer (or not at all when a whole body is one piece). A
    body with ``direct`` has the socket write the rest of each part into its buffer once the
    buffer is taken (a part's first bytes are still staged first, see ``STAGE_BYTES``).
    """

    def __init__(self, body: BodyStream, buffers: BufferPool, timeout: float) -> None:
        self._read = getattr(body, "readchunk", None) or body.readany
        self._direct: Callable[[], DirectSource | None] | None = getattr(body, "direct", None)
        self._buffers = buffers
        self._timeout = timeout
        # Received, not yet copied into a part buffer: the first pieces of the next part (not
        # charged, see STAGE_BYTES), the rest of a piece past a part's end, and the bytes of a
        # buffer given back (charged: ``_charged`` of them).
        self._staged: collections.deque[memoryview] = collections.deque()
        self._staged_bytes = 0
        self._charged = 0
        self._last_data = time.monotonic()
        self._waiting: asyncio.Timeout | None = None
        self._turned_away = False
        self.slow = False
        self.eof = False

    async def part(self, want: int) -> Part:
        """The next ``want`` bytes of the body (fewer only where it ends; none at its end)."""
        await self._stage(min(STAGE_BYTES, want))
        while True:
            if self.slow:
                await self._stage_charged(want)
            if len(self._staged) <= 1 and (
                (self.eof and self._staged_bytes <= want) or self._staged_bytes == want
            ):
                # The part is one received piece (or nothing: the end): no copy at all.
                piece = self._staged[0] if self._staged else memoryview(b"")
                await self._buffers.reserve(len(piece), credit=self._charged, slow=self.slow)
                self._staged.clear()
                self._staged_bytes = self._charged = 0
                return Part(piece, None)
            size = min(want, self._staged_bytes) if self.eof else want
            credit = min(self._charged, size)
            buf = await self._buffers.acquire(size, credit=credit, slow=self.slow)
            try:
                n = self._unstage_into(buf, size, credit)
                filled = await self._fill(buf, n, size)
            except BaseException:
                self._buffers.release(buf, reuse=False)  # the client left, or was cut off
                raise
            if filled is not None:
                return Part(memoryview(buf)[:filled], buf)
            # The buffer was given back (too slow while others waited); its bytes are staged.

    async def _stage(self, limit: int) -> None:
        """Hold the part's first pieces until ``limit`` bytes are here or the body ends."""
        while self._staged_bytes < limit and not self.eof:
            piece = await self._piece(self._timeout)
            if piece is not None:
                self._staged.append(piece)
                self._staged_bytes += len(piece)

    async def _stage_charged(self, want: int) -> None:
        """A slow upload holds the part's bytes as they come, charged to the budget, until it
        has the whole part (or the body ends); it gives them up if others need the room."""
        await self._charge(self._staged_bytes - self._charged)
        while self._staged_bytes < want and not self.eof:
            self._buffers.holding_slow(id(self), self._charged, self._give_up)
            try:
                piece = await self._piece(self._timeout)
            finally:
                self._buffers.holding_slow(id(self), 0, None)
            if self._turned_away:
                raise BufferBusy()
            if piece is not None:
                self._staged.append(piece)
                self._staged_bytes += len(piece)
                await self._charge(len(piece))

    async def _charge(self, nbytes: int) -> None:
        if nbytes > 0:
            await self._buffers.reserve(self._charged + nbytes, credit=self._charged, slow=True)
            self._charged += nbytes

    def _give_up(self) -> None:
        """Another upload needs the room this slow one holds: stop waiting for its client."""
        self._turned_away = True
        if self._waiting is not None:
            self._waiting.reschedule(asyncio.get_running_loop().time())

    def _unstage_into(self, buf: Buffer, size: int, credit: int) -> int:
        view = memoryview(buf)
        n = 0
        while self._staged and n < size:
            piece = self._staged.popleft()
            take = min(len(piece), size - n)
            view[n : n + take] = piece[:take]
            n += take
            if take < len(piece):
                # Part boundary: the piece's rest starts the next part.
                self._staged.appendleft(piece[take:])
        self._staged_bytes -= n
        self._charged -= credit  # those bytes are the buffer's now
        return n

    async def _fill(self, buf: Buffer, n: int, size: int) -> int | None:
        """Fill ``buf`` from ``n`` up to ``size``; None if it gave the buffer back."""
        fill = self._buffers.start_fill(slow=self.slow)
        try:
            return await self._fill_from_client(buf, n, size, fill)
        finally:
            self._buffers.end_fill(fill)

    async def _fill_from_client(self, buf: Buffer, n: int, size: int, fill: Fill) -> int | None:
        view = memoryview(buf)
        # A part larger than half the budget is an operator's choice, not a slow client's.
        may_yield = size <= self._buffers.budget // 2
        stopped = False  # the socket wrote into the buffer until it was too slow
        if n < size and not self.eof and self._direct is not None:
            source = self._direct()
            if source is not None:
                n = await self._fill_direct(source, view, n, size, may_yield, fill)
                stopped = n < size and not self.eof
        while n < size and not self.eof:
            if stopped:
                piece, stopped = None, False  # straight to the give-back below
            else:
                piece = await self._piece(SLOW_FILL_SECONDS)
            if piece is not None:
                take = min(len(piece), size - n)
                view[n : n + take] = piece[:take]
                n += take
                fill.received += take
                if take < len(piece):
                    # Part boundary: the rest of the piece starts the next part.
                    self._staged.append(piece[take:])
                    self._staged_bytes += len(piece) - take
            if (n < size and not self.eof and may_yield and self._buffers.contended
                    and self._buffers.too_slow(fill)):
                # Too slow while others wait: keep the bytes, give the buffer back. The copy
                # is a map of its own too (buffers.py): a part-sized bytes would come from
                # the heap once glibc's mmap threshold has risen, and not go back when freed.
                held = memoryview(allocate(n))
                held[:] = view[:n]
                self._staged.appendleft(held)
                self._staged_bytes += n
                self._charged += n
                self.slow = True
                self._buffers.release(buf, keep=n)
                return None
        return n

    async def _fill_direct(self, source: DirectSource, view: memoryview, n: int, size: int,
                           may_yield: bool, fill: Fill) -> int:
        """Let the socket write into ``view`` from ``n`` up to ``size`` (no copy); returns how
        far it got: ``size``, or less when too slow while others wait (the caller gives the
        buffer back) or at the body's end."""
        source.aim(view[n:size])
        fill.live = lambda: source.filled
        try:
            while source.filled < size - n and not source.ended:
                await self._wait_direct(source)
                if may_yield and self._buffers.contended and self._buffers.too_slow(fill):
                    break
        finally:
            fill.live = None
            got = source.release()
            fill.received += got
            n += got
        if n < size and source.ended:
            self.eof = True
        return n

    async def _wait_direct(self, source: DirectSource) -> None:
        """Until the aimed view is full, or ``SLOW_FILL_SECONDS``; the body's read timeout
        counts from the last byte received, as for pieces."""
        self._last_data = max(self._last_data, source.last_data)
        left = self._timeout - (time.monotonic() - self._last_data)
        if left <= 0:
            raise RequestTimeout()
        try:
            async with asyncio.timeout(min(SLOW_FILL_SECONDS, left)):
                await source.wait_filled()
        except TimeoutError:
            pass
        except OSError as exc:
            raise ClientGone(str(exc)) from exc
        self._last_data = max(self._last_data, source.last_data)

    async def _piece(self, patience: float) -> memoryview | None:
        """One received piece; None at the end of the body or when none came within
        ``patience`` (the body's read timeout counts from the last byte received)."""
        left = self._timeout - (time.monotonic() - self._last_data)
        try:
            async with asyncio.timeout(max(0.0, min(patience, left))) as self._waiting:
                chunk = await self._read()
        except TimeoutError:
            if time.monotonic() - self._last_data >= self._timeout:
                raise RequestTimeout() from None
            return None
        except OSError as exc:
            raise ClientGone(str(exc)) from exc
        finally:
            self._waiting = None
        if not chunk:
            self.eof = True
            return None
        self._last_data = time.monotonic()
        return memoryview(chunk)

    async def expect_end(self) -> None:
        """Read the end of a body whose declared length has arrived."""
        while not self.eof:
            if await self._piece(self._timeout) is not None:
                raise BadRequest("the body is longer than its Content-Length")

    def close(self) -> None:
        """Give back what is still staged (the upload ended or failed)."""
        self._buffers.unreserve(self._charged)
        self._staged.clear()
        self._staged_bytes = self._charged = 0


class _Upload:
    """One upload's way into the store, in the order it happens: read the next part, send it
    (hashed and sent while the next one is read, ``parts_in_flight`` at most), finish, or
    abort. A body that fits in its first part goes up as one PutObject."""

    def __init__(self, body: BodyStream, store: ObjectStore, key: str, size: int | None,
                 limits: UploadLimits, buffers: BufferPool, pools: HashPools,
                 on_multipart: Callable[[str], Awaitable[None]] | None,
                 stats: UploadStats) -> None:
        self.store, self.key, self.size, self.limits = store, key, size, limits
        self.buffers, self.pools, self.on_multipart = buffers, pools, on_multipart
        self.stats = stats
        self.reader = PartReader(body, buffers, limits.body_read_timeout)
        self.hasher = Hasher(pools)
        self.sink: PartSink | None = None
        self.in_flight: set[asyncio.Task[None]] = set()
        # Parts this upload holds, by identity: buffers compare by content, and equal parts
        # (a file of zeros) must not be mixed up.
        self.held: dict[int, Part] = {}
        self.total = 0
        self.number = 0
        self.reached_store = False  # a request that may have created something was sent
        self.started = time.monotonic()

    @property
    def ended(self) -> bool:
        return self.reader.eof or (self.size is not None and self.total >= self.size)

    async def next_part(self) -> Part | None:
        """The next part of the body, or None when nothing is left."""
        want = part_size_for(self.number + 1, self.size, self.limits.part_size)
        if self.size is not None:
            # A known length gets buffers no larger than what is still to come.
            want = min(want, self.size - self.total)
        if self.number > 0 and (want == 0 or self.ended):
            # A known length ends exactly at a part boundary: nothing more to read.
            return None
        part = await self.reader.part(want)
        self.held[id(part)] = part
        self.total += len(part.view)
        if self.limits.max_file_size > 0 and self.total >= self.limits.max_file_size:
            raise FileTooLarge()
        if not part.view and self.number > 0:
            # Part boundary of a body of unknown length (chunked): the last part was full and
            # the end came after it, so this read found nothing: the parts already sent are
            # the whole object, and no empty part is sent after them. An empty *first* part
            # is a body of length 0: it goes on, as one empty PutObject.
            self._give_back(part)
            return None
        self.number += 1
        if self.number > MAX_PARTS:
            raise FileTooLarge()
        return part

    async def put_whole(self, part: Part) -> None:
        """The whole body is this one part: a single PutObject."""
        crc, _ = await asyncio.gather(self.pools.crc32(part.view), self.hasher.feed(part.view))
        self.reached_store = True
        await self.store.put_object(self.key, part.view, crc)
        self._give_back(part)

    async def send(self, part: Part) -> None:
        """Start sending ``part`` (after waiting for a free slot among the parts in flight)."""
        if self.sink is None:
            self.reached_store = True
            self.sink = await self.store.open_sink(self.key)
            if self.on_multipart is not None:
                await self.on_multipart(self.sink.upload_id)
        while len(self.in_flight) >= self.limits.parts_in_flight:
            done, _ = await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self.in_flight.discard(task)
                task.result()
        hashed = self.hasher.feed(part.view)
        self.in_flight.add(asyncio.create_task(self._send(self.number, part, hashed)))

    async def _send(self, number: int, part: Part, hashed: asyncio.Future[None]) -> None:
        assert self.sink is not None
        self.stats.parts_in_flight += 1
        try:
            crc = await self.pools.crc32(part.view)
            await self.sink.write_part(number, part.view, crc)
        finally:
            self.stats.parts_in_flight -= 1
        await hashed
        self._give_back(part)

    async def finish(self) -> StoredObject:
        if not self.reader.eof:
            # A known length was read in full: read the end too (a framing error shows there).
            await self.reader.expect_end()
        if self.in_flight:
            await asyncio.gather(*self.in_flight)
            self.in_flight.clear()
        digests = await self.hasher.digests()
        received = time.monotonic()
        if self.sink is not None:
            await self.sink.commit()
        return StoredObject(self.key, self.total, digests, self.number,
                            received - self.started, time.monotonic() - received)

    async def abort(self, on_cleaned: Callable[[], Awaitable[None]] | None) -> None:
        for task in self.in_flight:
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)
        await self.hasher.cancel()
        await asyncio.shield(_clean_up(self.store, self.key, self.sink, self.reached_store,
                                       on_cleaned, self.limits.cleanup_timeout))

    def release_all(self, *, ok: bool) -> None:
        for part in self.held.values():
            # On failure a worker thread may still be reading: drop rather than reuse.
            part.give_back(self.buffers, reuse=ok)
        self.held.clear()
        self.reader.close()

    def _give_back(self, part: Part) -> None:
        del self.held[id(part)]
        part.give_back(self.buffers)


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
    upload = _Upload(body, store, key, size, limits, buffers, pools, on_multipart,
                     stats or UploadStats())
    ok = False
    try:
        while (part := await upload.next_part()) is not None:
            if upload.number == 1 and upload.ended:
                await upload.put_whole(part)
                break
            await upload.send(part)
        stored = await upload.finish()
        ok = True
        return stored
    except ObjectNotFound as exc:  # UploadPart or CompleteMultipartUpload: NoSuchUpload
        raise UploadInterrupted() from exc
    finally:
        if not ok:
            await upload.abort(on_cleaned)
        upload.release_all(ok=ok)


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
                # ... and it may yet be carried out after this delete (a frozen S3 runs both
                # once it thaws, in either order): the pending row stays, so the sweeper looks
                # again a stale window later and removes whatever landed.
                return
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


async def forget_pending(ctx: UploadContext, key: str) -> None:
    """Drop the pending row of an upload that never began (its client left before the body
    was asked for): nothing reached the store. If this fails too, the sweeper drops it."""
    try:
        async with ctx.db.connection() as conn:
            await q.delete_pending_upload(conn, key)
    except Exception as exc:
        log.warning("could not drop the pending row of %s, the sweeper will: %s", key, exc)


async def receive(
    ctx: UploadContext, body: BodyStream, key: str, *, project_id: int, size: int | None,
    pending_recorded: bool = False,
) -> StoredObject:
    """Record a pending upload of ``key`` (unless the caller's check before the body already
    did, in the same round trip), then stream the body into it.

    The pending row outlives a crash of this process, so the sweeper can abort what was left;
    it is dropped here on failure once the store is clean, and by the commit on success.
    Round trips: none more for a body that fits in one PutObject (the only S3 request); a
    multipart upload records its upload id (a crash before Complete leaves an upload that the
    sweeper aborts by id) and beats every ``heartbeat_interval`` while it lasts.
    """
    if not pending_recorded:
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
