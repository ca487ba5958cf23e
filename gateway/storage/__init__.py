"""The storage interface: what the gateway needs from an object store, and nothing more.

Implementations: ``storage.s3.S3Store`` (aiobotocore), ``storage.memory.MemoryStore`` (keeps
bytes, for tests) and ``storage.memory.NullStore`` (discards bytes, for benchmarks). Backend
errors are translated here once: callers see ``ObjectNotFound`` and ``StorageUnavailable``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import ServiceUnavailable


def new_object_key() -> str:
    """The one object key layout: opaque, never built from user input; the two-character
    prefix spreads keys over the store's partitions."""
    u = uuid.uuid4().hex
    return f"packages/{u[:2]}/{u}"


class ObjectNotFound(Exception):
    """No object under that key."""


class StorageUnavailable(ServiceUnavailable):
    """The object store cannot be reached or keeps failing; a client sees a JSON 503."""

    def __init__(self, detail: str = "object storage is unavailable", *,
                 answered: bool = False) -> None:
        super().__init__(detail)
        # The store answered, with an error status (it is up), rather than not at all.
        self.answered = answered


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class OpenUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str


class PartSink(Protocol):
    """Takes an object's parts. Nothing is visible until ``commit()`` returns.

    ``write_part`` may be called for several parts at once (part numbers from 1, any order);
    it retries a failed part from the buffer it was given before giving up, and does not keep
    a reference to the buffer after it returns.
    """

    key: str
    upload_id: str

    async def write_part(self, number: int, data: memoryview, crc32: int) -> None: ...

    async def commit(self) -> None:
        """The whole object appears, or this raises (and the upload is aborted)."""

    async def abort(self) -> None:
        """No object and no open multipart upload remain. Safe to call twice."""

    def recorded(self, number: int) -> dict[str, str]:
        """What Complete needs of part ``number`` once ``write_part`` returned (plain strings,
        to be kept elsewhere and handed to ``ObjectStore.resume_sink`` by another process)."""


class ObjectStore(Protocol):
    name: str

    async def put_object(self, key: str, data: memoryview, crc32: int) -> None:
        """Store a small object in one request; it is visible when this returns."""

    async def open_sink(self, key: str) -> PartSink:
        """Start a multipart upload of ``key``."""

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort an upload started by another process (the sweeper); missing is fine."""

    async def upload_exists(self, key: str, upload_id: str) -> bool:
        """Whether the multipart upload is still open (neither completed nor aborted)."""

    def resume_sink(self, key: str, upload_id: str,
                    parts: dict[int, dict[str, str]]) -> PartSink:
        """Continue a multipart upload that may have been started by another process, with the
        records (``PartSink.recorded``) of the parts it already holds."""

    async def stat(self, key: str) -> ObjectInfo:
        """Raises ObjectNotFound."""

    async def download_url(self, key: str, disposition: str, expires: int) -> str | None:
        """A presigned GET URL, or None when the gateway must stream the bytes itself."""

    def read(self, key: str, byte_range: tuple[int, int] | None = None) -> AsyncIterator[bytes]:
        """The object's bytes in chunks (only bytes ``first..last`` of ``byte_range``, both
        included, when given: the range must lie within the object). Raises ObjectNotFound."""

    async def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    async def list_keys(self) -> list[str]:
        """Every stored object key (tests, audits)."""

    async def list_open_uploads(self, prefix: str = "") -> list[OpenUpload]:
        """Multipart uploads neither completed nor aborted (of keys starting with ``prefix``)."""

    async def check(self) -> None:
        """Raises StorageUnavailable unless the store answers now (readiness)."""
