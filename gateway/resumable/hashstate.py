"""md5, sha1 and sha256 whose state travels with an upload session, from process to process.

hashlib's OpenSSL contexts cannot be exported (and the libraries that copy OpenSSL's private
structs out of memory do not work with OpenSSL 3). ``rehashes`` wraps RustCrypto's hashers,
whose state is serializable by design (``SerializableState``): the same speed as hashlib's in
our measurements, with the GIL released while it hashes. Its format belongs to its version,
so a state is stored with the engine's name and version, and a gateway running another
version refuses to continue rather than produce a wrong digest.
"""

from __future__ import annotations

import asyncio
import struct
from concurrent.futures import Executor
from importlib.metadata import version

import rehashes

from gateway.hashing import Digests

ENGINE = f"rehashes-{version('rehashes')}"
# Below this, a thread hop costs more than hashing on the loop.
_INLINE_LIMIT = 256 * 1024


class HashStateMismatch(Exception):
    """The state was written by another hash engine version."""


class SessionHasher:
    """The three digests of one session's bytes [0, offset), fed in order."""

    def __init__(self, state: bytes | None = None, engine: str = ENGINE) -> None:
        if state is None:
            self._md5, self._sha1, self._sha256 = (
                rehashes.PyMd5(), rehashes.PySha1(), rehashes.PySha256())
            return
        if engine != ENGINE:
            raise HashStateMismatch(engine)
        a, b = struct.unpack_from(">II", state)
        raw = memoryview(state)[8:]
        self._md5 = rehashes.PyMd5.deserialize(bytes(raw[:a]))
        self._sha1 = rehashes.PySha1.deserialize(bytes(raw[a : a + b]))
        self._sha256 = rehashes.PySha256.deserialize(bytes(raw[a + b :]))

    def state(self) -> bytes:
        md5, sha1, sha256 = (h.serialize() for h in (self._md5, self._sha1, self._sha256))
        return struct.pack(">II", len(md5), len(sha1)) + md5 + sha1 + sha256

    def _sha(self, data: bytes) -> None:
        self._sha1.update(data)
        self._sha256.update(data)

    async def feed(self, data: bytes, md5_pool: Executor, sha_pool: Executor) -> None:
        """Hash ``data`` (bytes: the library takes no views) on the given threads."""
        if len(data) < _INLINE_LIMIT:
            self._md5.update(data)
            self._sha(data)
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(loop.run_in_executor(md5_pool, self._md5.update, data),
                             loop.run_in_executor(sha_pool, self._sha, data))

    def digests(self) -> Digests:
        """The digests of everything fed (the hashers themselves are left as they were)."""
        return Digests(*(type(h).deserialize(h.serialize()).finalize()
                         for h in (self._md5, self._sha1, self._sha256)))
