"""The process's budget for upload bytes held in memory: part buffers, and the bytes of slow
uploads that gave their buffer back.

An upload takes a part buffer (``acquire``) once it has a part's first bytes; when the budget is
spent it waits (and stops reading its socket, which pushes back on the client), in line, each
waiter served as soon as it fits, none longer than ``wait_timeout``: then it gets a 503 with
``Retry-After`` rather than hanging.

Slow clients cannot sit on the budget. An upload whose client fills its buffer too slowly while
others wait gives it back, keeping only the bytes it has (uploads.py), and is *slow* from then
on: it holds its bytes as they come and takes a buffer only for a whole part; slow uploads are
served only when no other upload waits, and when another upload needs the room their bytes take,
they are turned away (503, ``Retry-After``), oldest first, whether they wait for room or for
their client. Too slowly is judged against the process's other fills (``too_slow``), not a fixed
time: when many uploads share a busy process each part takes longer to fill, and no client is
at fault for that.

A buffer is an anonymous memory map of its own, not a bytearray: the budget counts what is
resident only if a buffer the pool lets go gives its memory back at once, and a bytearray does
not. Once glibc has freed one large block it raises its mmap threshold (up to 32 MiB), so later
part buffers come from the heap, whose freed middle is never returned; and whatever still refers
to a dropped buffer (a coroutine's local while it waits for its client, a failed upload's
traceback until the garbage collector runs, a hashing thread finishing a cancelled part) keeps
all of it resident beside the buffers the budget counts. A dropped map's pages are handed back
to the kernel (``MADV_DONTNEED``) whoever still refers to it.
"""

from __future__ import annotations

import asyncio
import collections
import mmap
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.errors import ServiceUnavailable

# Buffers below this (a small body's own size) are not kept for reuse: their sizes vary.
_MIN_REUSE = 2**20
# What a client refused for want of room is told to wait before retrying, seconds.
RETRY_AFTER = 5
# A fill is judged only once it is this old: before, its rate says little.
SLOW_FILL_SECONDS = 2.0
# ... and it is slow if its client sends at under this share of the median rate of the
# process's fills (those at least SLOW_FILL_SECONDS / 4 old). Lenient on purpose: a slow
# upload is the first turned away (a 503), and on a starved machine a fast client's process
# may not run for a second or more; a slower one holding its buffer only makes others wait,
# and never longer than half the wait for room (``too_slow``).
SLOW_SHARE = 0.1
# ... or under this rate whatever the others do (a client that sends a byte now and then).
SLOW_RATE = 64 * 1024
# ... or under this rate over the last STALL_WINDOW it was judged in: a client that sent a
# burst and then trickles, whose rate over the whole fill the burst keeps high for long (2 MiB
# at once, then a byte a second, stays above SLOW_RATE for 32 s; meanwhile fast uploads queue
# behind every such one in turn). A fast client on a busy machine sends far more than this.
STALLED_RATE = 4 * 1024
STALL_WINDOW = SLOW_FILL_SECONDS / 2


# A dropped buffer's pages go back to the kernel at once; a late reader sees zeros.
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)

Buffer = mmap.mmap | bytearray  # bytearray: only the empty buffer (a map has a length)


def allocate(size: int) -> Buffer:
    """Zeroed memory of ``size`` bytes, in a map of its own (pages are resident once written)."""
    return mmap.mmap(-1, size) if size else bytearray()


def discard(buf: Buffer) -> None:
    """Return the pages of a buffer no longer held, even while something still refers to it
    (it only reads zeros then: no buffer is dropped while its bytes are still to be used)."""
    if isinstance(buf, mmap.mmap) and _DONTNEED is not None and not buf.closed:
        buf.madvise(_DONTNEED)


class BufferBusy(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("too many uploads in progress, please retry", retry_after=RETRY_AFTER)


@dataclass(eq=False, slots=True)
class Fill:
    """A part buffer being filled by its client: the bytes that arrived since it started are
    ``received`` plus what ``live`` reports (bytes the socket writes straight into it)."""

    started: float = field(default_factory=time.monotonic)
    received: int = 0
    live: Callable[[], int] | None = None
    # An upload found slow before: it got this buffer only because no other waited for room.
    slow: bool = False
    # Progress when last judged (``BufferPool.too_slow``), and when.
    judged_at: float = field(default_factory=time.monotonic)
    judged_bytes: int = 0
    stalled: bool = False  # the last window's verdict

    def progress(self) -> int:
        return self.received + (self.live() if self.live is not None else 0)


@dataclass(eq=False)
class _Waiter:
    need: int  # bytes beyond what the waiter holds already
    credit: int  # bytes the waiter holds, which it gives up for this request
    slow: bool
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BufferPool:
    """Part buffers and held bytes of every upload of a process, within ``budget`` bytes.

    A request larger than the whole budget is still granted when nothing else is held, so no
    upload can wait forever for room that can never exist.
    """

    def __init__(self, budget: int, *, wait_timeout: float = 30.0) -> None:
        self.budget = budget
        self.wait_timeout = wait_timeout
        self.used = 0
        self.peak = 0
        self.turned_away = 0
        # Requests that had to wait for room, and the seconds spent waiting (metrics).
        self.waits = 0
        self.wait_seconds = 0.0
        self._free: dict[int, list[Buffer]] = {}
        self._free_bytes = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        # Slow uploads holding bytes while they wait for more from their client: the bytes
        # held, and a callback that makes the upload give them up (a 503) at once.
        self._slow_holders: dict[int, tuple[int, Callable[[], None]]] = {}
        self._fills: set[Fill] = set()

    @property
    def contended(self) -> bool:
        """True while some upload waits for room."""
        return bool(self._waiters)

    @property
    def others_waiting(self) -> bool:
        """True while an upload that is not slow waits for room."""
        return any(not w.slow for w in self._waiters)

    def holding_slow(self, key: int, held: int, give_up: Callable[[], None] | None) -> None:
        """A slow upload starts (``give_up``) or stops (None) waiting for its client while it
        holds ``held`` bytes; ``give_up`` is called when another upload needs them."""
        if give_up is None:
            self._slow_holders.pop(key, None)
        else:
            self._slow_holders[key] = (held, give_up)

    # --- fills ------------------------------------------------------------------------------

    def start_fill(self, *, slow: bool = False) -> Fill:
        fill = Fill(slow=slow)
        self._fills.add(fill)
        return fill

    def end_fill(self, fill: Fill) -> None:
        self._fills.discard(fill)

    def too_slow(self, fill: Fill) -> bool:
        """Whether ``fill``'s client is slow: it sends under ``SLOW_RATE``, or under
        ``SLOW_SHARE`` of the median rate of the process's fills, or its fill has lasted half
        the wait for room (a waiter must not time out behind it), or it has all but stopped
        since it was last judged (``STALLED_RATE``). Not a fixed time: a busy process fills
        every part slower (16 uploads sharing 95 MB/s: 2.8 s per 16 MiB part), and that is no
        client's fault, nor a reason for a 503. Rates are over the whole fill, so a client
        whose process was not scheduled for a moment is not judged on it alone."""
        if fill.slow:
            # Served last, it gives way at once to an upload that is not slow (else every
            # part of a fast upload would wait for slow ones, refilled in turn, to be judged).
            return self.others_waiting
        now = time.monotonic()
        progress = fill.progress()
        if (since := now - fill.judged_at) >= STALL_WINDOW:
            fill.stalled = (progress - fill.judged_bytes) / since < STALLED_RATE
            fill.judged_at, fill.judged_bytes = now, progress
        elapsed = now - fill.started
        if elapsed < SLOW_FILL_SECONDS:
            return False
        rate = progress / elapsed
        if rate < SLOW_RATE or fill.stalled or elapsed >= self.wait_timeout / 2:
            return True
        rates = sorted(f.progress() / (now - f.started) for f in self._fills
                       if now - f.started >= SLOW_FILL_SECONDS / 4)
        return bool(rates) and rate < SLOW_SHARE * rates[len(rates) // 2]

    # --- charging --------------------------------------------------------------------------

    def _fits(self, need: int, credit: int) -> bool:
        return self.used + need <= self.budget or self.used == credit

    def _take(self, need: int) -> None:
        self.used += need
        self.peak = max(self.peak, self.used)

    def _give_back(self, nbytes: int) -> None:
        self.used -= nbytes
        self._grant()

    async def _room(self, need: int, credit: int, slow: bool) -> None:
        """Charge ``need`` more bytes, waiting in line for room, at most ``wait_timeout``."""
        ahead = self._waiters if slow else [w for w in self._waiters if not w.slow]
        # Needing no more room than it holds (a slow upload that has its whole part), it takes
        # nothing from anyone: it goes on, rather than wait in line to be turned away.
        if need == 0 or (not ahead and self._fits(need, credit)):
            self._take(need)
            return
        waiter = _Waiter(need, credit, slow)
        self._waiters.append(waiter)
        self._grant()  # it may fit where those before it do not
        self.waits += 1
        since = time.monotonic()
        try:
            async with asyncio.timeout(self.wait_timeout):
                await waiter.future
        except TimeoutError:
            if not self._granted(waiter):
                self.turned_away += 1
                raise BufferBusy() from None
        except BaseException:
            if self._granted(waiter):
                self._give_back(need)  # granted just as we were cancelled
            raise
        finally:
            self.wait_seconds += time.monotonic() - since
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                self._grant()  # a waiter that was in the way has left

    @staticmethod
    def _granted(waiter: _Waiter) -> bool:
        return (waiter.future.done() and not waiter.future.cancelled()
                and waiter.future.exception() is None)

    def _grant(self) -> None:
        """Serve the waiters that fit now, in order, those that are not slow first (a large one
        does not hold back smaller ones behind it: it is served as soon as its room is there).
        While one that is not slow still waits, no slow one is served; slow ones waiting are
        turned away, oldest first, until its room is there, and slow ones filling a buffer are
        told to give it back."""
        fast = [w for w in self._waiters if not w.slow]
        for waiter in fast:
            if self._fits(waiter.need, waiter.credit):
                self._serve(waiter)
        still = [w for w in fast if not w.future.done()]
        if still:
            self._make_room(still[0])
            return
        for waiter in list(self._waiters):
            if self._fits(waiter.need, waiter.credit):
                self._serve(waiter)

    def _serve(self, waiter: _Waiter) -> None:
        self._take(waiter.need)
        self._waiters.remove(waiter)
        waiter.future.set_result(None)

    def _make_room(self, waiter: _Waiter) -> None:
        """Turn slow uploads away, oldest first, until ``waiter`` fits: their uploads fail (a
        503) and give back what they hold as they end."""
        freed = 0
        for slow in [w for w in self._waiters if w.slow]:
            if self.used - freed + waiter.need <= self.budget:
                return
            self._waiters.remove(slow)
            self.turned_away += 1
            slow.future.set_exception(BufferBusy())
            freed += slow.credit
        for key, (held, give_up) in list(self._slow_holders.items()):
            if self.used - freed + waiter.need <= self.budget:
                return
            del self._slow_holders[key]
            self.turned_away += 1
            give_up()
            freed += held

    # --- the interface ---------------------------------------------------------------------

    async def acquire(self, size: int, *, credit: int = 0, slow: bool = False) -> Buffer:
        """A buffer of ``size`` bytes. ``credit``: bytes the caller holds (charged) and gives
        up for it (they are copied in), so only ``size - credit`` more is charged."""
        need = max(0, size - credit)
        await self._room(need, credit, slow)
        if credit > size:
            self._give_back(credit - size)
        free = self._free.get(size)
        if free:
            self._free_bytes -= size
            return free.pop()
        # Make room: drop idle buffers of other sizes before allocating.
        for other in list(self._free):
            while self._free[other] and self.used + self._free_bytes > self.budget:
                discard(self._free[other].pop())
                self._free_bytes -= other
        try:
            return allocate(size)
        except BaseException:
            self._give_back(need)  # out of memory (OSError): the room is not kept
            raise

    def release(self, buf: Buffer, *, reuse: bool = True, keep: int = 0) -> None:
        """Return a buffer. ``reuse=False`` when a worker thread may still read it (it then
        reads zeros: its upload has failed); ``keep`` bytes stay charged to the caller (what
        it copied out to hold)."""
        size = len(buf)
        # Idle buffers kept for reuse and bytes held stay within the budget together.
        if reuse and size >= _MIN_REUSE and self.used + keep + self._free_bytes <= self.budget:
            self._free.setdefault(size, []).append(buf)
            self._free_bytes += size
        else:
            discard(buf)
        self._give_back(size - keep)

    async def reserve(self, nbytes: int, *, credit: int = 0, slow: bool = False) -> None:
        """Charge ``nbytes`` held as they were received (a piece sent as it is), of which
        ``credit`` are charged already; waits for room as ``acquire`` does."""
        await self._room(max(0, nbytes - credit), credit, slow)
        if credit > nbytes:
            self._give_back(credit - nbytes)

    def unreserve(self, nbytes: int) -> None:
        """Held bytes are gone."""
        if nbytes:
            self._give_back(nbytes)

    def drop_idle(self) -> None:
        """Forget the idle buffers kept for reuse (the app is shutting down)."""
        for idle in self._free.values():
            for buf in idle:
                discard(buf)
        self._free.clear()
        self._free_bytes = 0
