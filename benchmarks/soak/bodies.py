"""Upload bodies made from a seed and an op id: every body differs from every other (its op
id is stamped in each block), and any byte range of it can be made again without storing it."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

BLOCK = 256 * 1024
_STAMP = 16


class BodyMaker:
    """One pseudo-random block per run; body ``op`` is that block with ``op`` and the block's
    number written over the first 16 bytes of each block."""

    def __init__(self, seed: int) -> None:
        self._block = random.Random(seed).randbytes(BLOCK)

    def _block_of(self, op: int, index: int) -> bytes:
        stamp = op.to_bytes(8, "big") + index.to_bytes(8, "big")
        return stamp + self._block[_STAMP:]

    def chunks(self, op: int, size: int, start: int = 0, end: int | None = None
               ) -> Iterator[bytes]:
        """Bytes ``start`` up to ``end`` (exclusive; default ``size``) of body ``op``."""
        end = size if end is None else min(end, size)
        pos = start
        while pos < end:
            index, offset = divmod(pos, BLOCK)
            take = min(BLOCK - offset, end - pos)
            yield self._block_of(op, index)[offset:offset + take]
            pos += take

    def sha256(self, op: int, size: int) -> str:
        h = hashlib.sha256()
        for chunk in self.chunks(op, size):
            h.update(chunk)
        return h.hexdigest()

    def slice(self, op: int, size: int, start: int, end: int) -> bytes:
        return b"".join(self.chunks(op, size, start, end))
