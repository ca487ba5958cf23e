"""The S3 store, on aiobotocore: multipart uploads, presigned URLs, aborts.

botocore signs (SigV4), pools connections and retries with backoff; this module adds only what
S3 leaves to the caller: CRC32 part checksums, the complete/abort pairing, and one translation
of backend errors into the storage interface's errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from aiohttp.payload import BytesPayload
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from gateway.config import Settings
from gateway.storage import ObjectInfo, ObjectNotFound, OpenUpload, StorageUnavailable

log = logging.getLogger("gateway.storage.s3")

_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_READ_CHUNK = 1024 * 1024
# aiohttp arms its read timeout only once a request body is sent, so a server that stops
# reading (frozen, or a black-holed network) would hold a part upload forever. A call that
# sends a body therefore gets an overall deadline: per attempt the connect and read timeouts
# plus the body at this floor rate, and botocore's largest backoffs between attempts.
_MIN_SEND_RATE = 1024 * 1024  # bytes per second
_MAX_BACKOFF = 20.0


@dataclass(frozen=True, slots=True)
class _Deadlines:
    connect: float
    read: float
    attempts: int

    def for_body(self, size: int) -> float:
        per_attempt = self.connect + self.read + size / _MIN_SEND_RATE
        backoff = sum(min(2.0**i, _MAX_BACKOFF) for i in range(self.attempts - 1))
        return self.attempts * per_attempt + backoff
# A presigned URL is handed out again for at most this long (and a tenth of its lifetime), so
# every URL a client gets stays valid for at least 90% of GATEWAY_PRESIGN_EXPIRES. Signing costs
# more than the rest of a redirect; a busy file is asked for many times a second.
_URL_REUSE_SECONDS = 30.0
_URL_CACHE_SIZE = 10_000


@functools.cache
def _session() -> AioSession:
    """One botocore session per process: its service models (tens of thousands of objects)
    are loaded once, however many stores are opened (tests open one per app)."""
    return get_session()


def _b64crc(crc32: int) -> str:
    return base64.b64encode(crc32.to_bytes(4, "big")).decode()


class _PartBody(BytesPayload):
    """A part as aiohttp's request body, without a copy: aiohttp slices a bytearray body to its
    length (a copy of every part) but a memoryview for free. botocore rewinds a body before it
    retries; a whole part in memory is simply sent again, so rewinding is a no-op."""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0


def _body(data: memoryview) -> _PartBody:
    flat = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    return _PartBody(flat, content_type="application/octet-stream")


def _is_missing(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return err.get("Code") in _MISSING or status == 404


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Backend errors become the interface's: missing → ObjectNotFound, the rest → 503."""
    try:
        yield
    except ClientError as exc:
        if _is_missing(exc):
            raise ObjectNotFound(action) from exc
        log.warning("s3 %s failed: %s", action, exc)
        raise StorageUnavailable() from exc
    except (TimeoutError, BotoCoreError, OSError) as exc:
        log.warning("s3 %s failed: %s", action, exc)
        raise StorageUnavailable() from exc


class S3Sink:
    """One multipart upload; every part carries a CRC32 that Complete repeats."""

    def __init__(self, store: S3Store, key: str, upload_id: str) -> None:
        self.key = key
        self.upload_id = upload_id
        self._store = store
        self._parts: dict[int, dict[str, Any]] = {}
        self._finished = False

    async def write_part(self, number: int, data: memoryview, crc32: int) -> None:
        checksum = _b64crc(crc32)
        with translate_errors("upload_part"):
            async with self._store.deadline(len(data)):
                resp = await self._store.client.upload_part(
                    Bucket=self._store.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=_body(data),
                    ContentLength=len(data),
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=checksum,
                )
        # Some servers (rclone) do not echo the checksum: send the one computed here.
        self._parts[number] = {
            "PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": checksum
        }

    async def commit(self) -> None:
        try:
            with translate_errors("complete_multipart_upload"):
                await self._store.client.complete_multipart_upload(
                    Bucket=self._store.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": [self._parts[n] for n in sorted(self._parts)]},
                )
        except BaseException:
            await self.abort()
            raise
        self._finished = True

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        await self._store.abort_upload(self.key, self.upload_id)


class S3Store:
    """ObjectStore on an S3 API. Open it with ``async with S3Store.open(settings) as store``."""

    name = "s3"

    def __init__(self, client: Any, presign_client: Any, bucket: str, proxy: bool,
                 deadlines: _Deadlines | None = None) -> None:
        self.client = client
        self._presign = presign_client
        self.bucket = bucket
        self._proxy = proxy
        self._deadlines = deadlines or _Deadlines(10.0, 60.0, 4)
        self._urls: dict[tuple[str, str, int], tuple[float, str]] = {}

    def deadline(self, size: int) -> asyncio.Timeout:
        """The overall deadline of one call that sends ``size`` bytes (retries included)."""
        return asyncio.timeout(self._deadlines.for_body(size))

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[S3Store]:
        session = _session()
        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
            # Checksums are computed off the event loop by the upload pipeline and passed in.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=max(64, settings.parts_in_flight * 32),
            # Part bodies are aiohttp payloads (see _PartBody), which botocore's parameter check
            # refuses; every parameter is built here.
            parameter_validation=False,
        )
        common: dict[str, Any] = {"region_name": settings.s3_region, "config": config}
        if settings.s3_access_key_id:
            common["aws_access_key_id"] = settings.s3_access_key_id
            common["aws_secret_access_key"] = settings.s3_secret_access_key
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                session.create_client("s3", endpoint_url=settings.s3_endpoint_url, **common)
            )
            # botocore asks for "100 Continue" before a body, and aiohttp's client waits for it
            # with no timeout at all: a frozen server would hold the upload forever.
            client.meta.events.unregister("before-call.s3", add_expect_header)
            presign = client
            public = settings.s3_public_endpoint_url
            if public and public != settings.s3_endpoint_url:
                presign = await stack.enter_async_context(
                    session.create_client("s3", endpoint_url=public, **common)
                )
            deadlines = _Deadlines(
                settings.s3_connect_timeout, settings.s3_read_timeout, settings.s3_max_attempts
            )
            yield cls(client, presign, settings.s3_bucket, settings.download_mode == "proxy",
                      deadlines)

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (development and tests)."""
        with translate_errors("create_bucket"):
            try:
                await self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if not _is_missing(exc):
                    raise
                await self.client.create_bucket(Bucket=self.bucket)

    async def put_object(self, key: str, data: memoryview, crc32: int) -> None:
        with translate_errors("put_object"):
            async with self.deadline(len(data)):
                await self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=_body(data),
                    ContentLength=len(data),
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=_b64crc(crc32),
                )

    async def open_sink(self, key: str) -> S3Sink:
        with translate_errors("create_multipart_upload"):
            resp = await self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="CRC32"
            )
        return S3Sink(self, key, resp["UploadId"])

    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            with translate_errors("abort_multipart_upload"):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
        except ObjectNotFound:
            pass

    async def stat(self, key: str) -> ObjectInfo:
        with translate_errors("head_object"):
            resp = await self.client.head_object(Bucket=self.bucket, Key=key)
        return ObjectInfo(key, resp["ContentLength"])

    async def download_url(self, key: str, disposition: str, expires: int) -> str | None:
        if self._proxy:
            return None
        now = time.monotonic()
        cache_key = (key, disposition, expires)
        hit = self._urls.get(cache_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        url = await self._presign.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": disposition,
                "ResponseContentType": "application/octet-stream",
            },
            ExpiresIn=expires,
        )
        reuse = min(_URL_REUSE_SECONDS, expires / 10)
        if reuse > 0:
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[cache_key] = (now + reuse, url)
        return url

    async def read(self, key: str) -> AsyncIterator[bytes]:
        with translate_errors("get_object"):
            resp = await self.client.get_object(Bucket=self.bucket, Key=key)
        async with resp["Body"] as body:
            with translate_errors("get_object"):
                async for chunk in body.iter_chunks(_READ_CHUNK):
                    yield chunk

    async def delete(self, key: str) -> None:
        try:
            with translate_errors("delete_object"):
                await self.client.delete_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            pass

    async def list_keys(self) -> list[str]:
        keys: list[str] = []
        with translate_errors("list_objects_v2"):
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket):
                keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    async def list_open_uploads(self, prefix: str = "") -> list[OpenUpload]:
        uploads: list[OpenUpload] = []
        try:
            with translate_errors("list_multipart_uploads"):
                paginator = self.client.get_paginator("list_multipart_uploads")
                async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                    uploads.extend(
                        OpenUpload(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])
                    )
        except ObjectNotFound:
            # rclone answers NoSuchUpload for a bucket in which no multipart upload was started
            # since it started: there is none open.
            return []
        return uploads
