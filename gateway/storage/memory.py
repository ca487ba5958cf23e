"""In-process stores: MemoryStore keeps bytes (unit tests), NullStore discards them (benchmarks)."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import AsyncIterator

from gateway.storage import ObjectInfo, ObjectNotFound, OpenUpload

_CHUNK = 1024 * 1024


class MemorySink:
    def __init__(self, store: MemoryStore, key: str, upload_id: str | None = None) -> None:
        self.key = key
        self.upload_id = upload_id or uuid.uuid4().hex
        self._store = store
        # Parts live in the store, so that another sink may continue the upload.
        self._parts: dict[int, bytes] = store.parts.setdefault(self.upload_id, {})

    def recorded(self, number: int) -> dict[str, str]:
        return {"etag": str(number), "crc32": ""}

    async def write_part(self, number: int, data: memoryview, crc32: int) -> None:
        if self.upload_id not in self._store.uploads:
            raise ObjectNotFound(self.key)  # S3's NoSuchUpload
        if self._store.keep_bytes:
            if zlib.crc32(data) != crc32:
                raise ValueError(f"part {number}: checksum mismatch")
            self._parts[number] = bytes(data)
        else:
            self._parts[number] = b""
            self._store.sizes[self.upload_id] = self._store.sizes.get(self.upload_id, 0) + len(data)

    async def commit(self) -> None:
        if self.upload_id not in self._store.uploads:
            raise ObjectNotFound(self.key)
        del self._store.uploads[self.upload_id]
        self._store.parts.pop(self.upload_id, None)
        data = b"".join(self._parts[n] for n in sorted(self._parts))
        size = self._store.sizes.pop(self.upload_id, len(data))
        self._store.objects[self.key] = (data, size)

    async def abort(self) -> None:
        self._store.uploads.pop(self.upload_id, None)
        self._store.sizes.pop(self.upload_id, None)
        self._store.parts.pop(self.upload_id, None)
        self._parts.clear()


class MemoryStore:
    """Objects in a dict. Downloads are streamed by the gateway (no URL to redirect to)."""

    name = "memory"
    keep_bytes = True

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.uploads: dict[str, str] = {}  # upload id -> key
        self.sizes: dict[str, int] = {}
        self.parts: dict[str, dict[int, bytes]] = {}  # upload id -> its parts

    async def put_object(self, key: str, data: memoryview, crc32: int) -> None:
        if self.keep_bytes and zlib.crc32(data) != crc32:
            raise ValueError("checksum mismatch")
        self.objects[key] = (bytes(data) if self.keep_bytes else b"", len(data))

    async def open_sink(self, key: str) -> MemorySink:
        sink = MemorySink(self, key)
        self.uploads[sink.upload_id] = key
        return sink

    def resume_sink(self, key: str, upload_id: str,
                    parts: dict[int, dict[str, str]]) -> MemorySink:
        return MemorySink(self, key, upload_id)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)
        self.parts.pop(upload_id, None)

    async def upload_exists(self, key: str, upload_id: str) -> bool:
        return self.uploads.get(upload_id) == key

    async def stat(self, key: str) -> ObjectInfo:
        if key not in self.objects:
            raise ObjectNotFound(key)
        return ObjectInfo(key, self.objects[key][1])

    async def download_url(self, key: str, disposition: str, expires: int) -> str | None:
        return None

    async def read(self, key: str, byte_range: tuple[int, int] | None = None
                   ) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise ObjectNotFound(key)
        data = self.objects[key][0]
        if byte_range is not None:
            data = data[byte_range[0] : byte_range[1] + 1]
        for i in range(0, len(data), _CHUNK):
            yield data[i : i + _CHUNK]

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def list_keys(self) -> list[str]:
        return list(self.objects)

    async def list_open_uploads(self, prefix: str = "") -> list[OpenUpload]:
        return [OpenUpload(key, uid) for uid, key in self.uploads.items() if key.startswith(prefix)]

    async def check(self) -> None:
        """Always there."""


class NullStore(MemoryStore):
    """Accepts every byte and keeps none: the gateway's own ceiling, without S3's cost."""

    name = "null"
    keep_bytes = False
