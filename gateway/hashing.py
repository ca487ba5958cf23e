"""md5, sha1 and sha256 of an upload, computed off the event loop as the parts pass.

hashlib releases the GIL for large updates, so md5 (the slowest) runs on one thread and
sha1+sha256 on another, both fed whole parts in order; each part's CRC32 (the S3 part checksum)
is computed on a third pool before the part is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

try:
    # ISA-L's CRC32 (the same polynomial as zlib's) runs several times faster.
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - isal has wheels for the usual platforms
    from zlib import crc32 as _crc32

# Below this, a thread hop costs more than hashing on the loop.
_INLINE_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Digests:
    md5: str
    sha1: str
    sha256: str


class HashPools:
    """The process's hashing threads; shut down with the app."""

    def __init__(self, threads: int | None = None) -> None:
        n = threads or os.cpu_count() or 2
        self.md5 = ThreadPoolExecutor(n, thread_name_prefix="md5")
        self.sha = ThreadPoolExecutor(n, thread_name_prefix="sha")
        self.crc = ThreadPoolExecutor(n, thread_name_prefix="crc32")

    def shutdown(self) -> None:
        for pool in (self.md5, self.sha, self.crc):
            pool.shutdown(wait=True, cancel_futures=True)

    async def crc32(self, data: memoryview) -> int:
        if len(data) < _INLINE_LIMIT:
            return _crc32(data)
        return await asyncio.get_running_loop().run_in_executor(self.crc, _crc32, data)


class Hasher:
    """Digests of one stream. ``feed`` may be called before the previous part is hashed:
    parts are chained so they reach the hash objects in order."""

    def __init__(self, pools: HashPools) -> None:
        self._pools = pools
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha1 = hashlib.sha1(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._tail: asyncio.Future[None] | None = None

    def _sha_update(self, data: memoryview) -> None:
        self._sha1.update(data)
        self._sha256.update(data)

    async def _hash_after(self, previous: asyncio.Future[None] | None, data: memoryview) -> None:
        if previous is not None:
            await previous
        if len(data) < _INLINE_LIMIT:
            self._md5.update(data)
            self._sha_update(data)
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            loop.run_in_executor(self._pools.md5, self._md5.update, data),
            loop.run_in_executor(self._pools.sha, self._sha_update, data),
        )

    def feed(self, data: memoryview) -> asyncio.Future[None]:
        """Queue ``data``; the returned future resolves once it is hashed (keep the buffer
        alive until then)."""
        self._tail = asyncio.ensure_future(self._hash_after(self._tail, data))
        return self._tail

    async def digests(self) -> Digests:
        if self._tail is not None:
            await self._tail
        return Digests(self._md5.hexdigest(), self._sha1.hexdigest(), self._sha256.hexdigest())

    async def cancel(self) -> None:
        """Wait out queued work so no thread still reads a buffer about to be reused."""
        if self._tail is not None:
            # Only draining: the real error is reported elsewhere.
            with contextlib.suppress(BaseException):
                await self._tail
