"""The S3 store, on aiobotocore: multipart uploads, presigned URLs, aborts.

botocore signs (SigV4), pools connections and retries with backoff; this module adds only what
S3 leaves to the caller: CRC32 part checksums, the complete/abort pairing, and one translation
of backend errors into the storage interface's errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from aiohttp import ClientError as HttpClientError
from aiohttp import ClientPayloadError, StreamReader
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.payload import BytesPayload
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from gateway.config import Settings
from gateway.storage import ObjectInfo, ObjectNotFound, OpenUpload, StorageUnavailable

log = logging.getLogger("gateway.storage.s3")

_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
# A GetObject body is read as the connection received it, held back once this much waits.
_READ_AHEAD = 1024 * 1024
# A part body is handed to the connection this much at a time; each piece taken is progress.
_WRITE_CHUNK = 1024 * 1024
# ... but the first piece is small: aiohttp sends the headers with it, and before Python 3.12.9
# joins the two into a new bytes, a copy of that piece outside the buffer budget per part sent.
_FIRST_WRITE = 64 * 1024
# CompleteMultipartUpload of many parts may take S3 a while to assemble (AWS keeps the
# connection alive meanwhile): its deadline grows by this much per part.
_COMPLETE_SECONDS_PER_PART = 0.01


class _CallDeadline:
    """The deadline of one S3 call, all its attempts together: it fails (TimeoutError) once the
    call has gone ``window`` seconds without progress, meaning a piece of its body taken by
    the connection or an answer from S3 (a retried error counts: that server is alive).

    A frozen or black-holed server so fails within the window, while a slow but live one still
    finishes parts of any size: an upload is cut only when less than ``_WRITE_CHUNK`` bytes of
    its body move in a whole window. botocore's per-attempt connect and read timeouts still
    apply inside it. The deadline is found by the body and by the answer hook through a
    context variable, as both run inside the call's task (or a task it started).
    """

    __slots__ = ("_loop", "_timeout", "_token", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout(window)
        self._token: contextvars.Token[_CallDeadline | None] | None = None

    def progress(self) -> None:
        self._timeout.reschedule(self._loop.time() + self.window)

    async def __aenter__(self) -> _CallDeadline:
        await self._timeout.__aenter__()
        self._token = _current_call.set(self)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._token is not None
        _current_call.reset(self._token)
        return await self._timeout.__aexit__(*exc)


_current_call: contextvars.ContextVar[_CallDeadline | None] = contextvars.ContextVar(
    "s3_call_deadline", default=None
)


def _answer_received(**_: Any) -> None:
    """botocore's ``response-received`` event, after every attempt."""
    if (call := _current_call.get()) is not None:
        call.progress()


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
    retries; a whole part in memory is simply sent again, so rewinding is a no-op. The body is
    written a piece at a time, each piece taken by the connection being progress of its call."""

    def __init__(self, value: memoryview, *, call: _CallDeadline | None) -> None:
        super().__init__(value, content_type="application/octet-stream")
        self._call = call

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        view = self._value if content_length is None else self._value[:content_length]
        start, piece = 0, _FIRST_WRITE
        while start < len(view):
            await writer.write(view[start : start + piece])
            if self._call is not None:
                self._call.progress()
            start, piece = start + piece, _WRITE_CHUNK


def _body(data: memoryview) -> _PartBody:
    flat = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    return _PartBody(flat, call=_current_call.get())


def _is_missing(exc: ClientError) -> bool:
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return err.get("Code") in _MISSING or status == 404


@contextlib.contextmanager
def translate_errors(action: str, errors: Counter[str] | None = None) -> Iterator[None]:
    """Backend errors become the interface's: missing → ObjectNotFound, the rest → 503
    (counted by action in ``errors``, for the metrics)."""
    try:
        yield
    except ClientError as exc:
        if _is_missing(exc):
            raise ObjectNotFound(action) from exc
        log.warning("s3 %s failed: %s", action, exc)
        if errors is not None:
            errors[action] += 1
        raise StorageUnavailable(answered=True) from exc
    except (TimeoutError, BotoCoreError, OSError, HttpClientError, HttpProcessingError) as exc:
        # The last two: an answer's body cut short (fewer bytes than its Content-Length),
        # e.g. a GetObject whose object is deleted while it streams.
        log.warning("s3 %s failed: %s", action, _describe(exc))
        if errors is not None:
            errors[action] += 1
        raise StorageUnavailable() from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "no progress within GATEWAY_S3_REQUEST_DEADLINE"
    return str(exc) or type(exc).__name__


async def _received(content: StreamReader, length: int | None) -> AsyncIterator[bytes]:
    """An answer's body in the pieces the connection received (up to 256 KiB each), none
    joined into another: ``StreamReader.read(n)`` copies every byte once more to make pieces
    of ``n`` (a tenth of the event loop's time in a proxied download). Raises
    ``ClientPayloadError`` when the body ends before ``length`` bytes (when known)."""
    # Reading is paused past twice this much buffered (64 KiB by default: a pause and a
    # resume, two epoll changes, per piece received).
    content.set_read_chunk_size(_READ_AHEAD)
    received = 0
    while True:
        chunk, end_of_http_chunk = await content.readchunk()
        if chunk:
            received += len(chunk)
            yield chunk
        elif not end_of_http_chunk:  # the end of the body
            break
    if length is not None and received != length:
        raise ClientPayloadError(f"object body ended after {received} of {length} bytes")


class S3Sink:
    """One multipart upload; every part carries a CRC32 that Complete repeats."""

    def __init__(self, store: S3Store, key: str, upload_id: str,
                 parts: dict[int, dict[str, str]] | None = None) -> None:
        self.key = key
        self.upload_id = upload_id
        self._store = store
        self._parts: dict[int, dict[str, Any]] = {
            n: {"PartNumber": n, "ETag": p["etag"], "ChecksumCRC32": p["crc32"]}
            for n, p in (parts or {}).items()
        }
        self._finished = False

    def recorded(self, number: int) -> dict[str, str]:
        part = self._parts[number]
        return {"etag": part["ETag"], "crc32": part["ChecksumCRC32"]}

    async def write_part(self, number: int, data: memoryview, crc32: int) -> None:
        checksum = _b64crc(crc32)
        async with self._store.call("upload_part"):
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
            extra = len(self._parts) * _COMPLETE_SECONDS_PER_PART
            async with self._store.call("complete_multipart_upload", extra=extra):
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
                 request_deadline: float = 30.0) -> None:
        self.client = client
        self._presign = presign_client
        self.bucket = bucket
        self._proxy = proxy
        self.request_deadline = request_deadline
        self._urls: dict[tuple[str, str, int], tuple[float, str]] = {}
        # Failed calls by action (the metrics read it).
        self.errors: Counter[str] = Counter()
        client.meta.events.register("response-received.s3", _answer_received)

    @contextlib.asynccontextmanager
    async def call(self, action: str, *, extra: float = 0.0) -> AsyncIterator[None]:
        """One S3 call: its errors translated, and a deadline of ``GATEWAY_S3_REQUEST_DEADLINE``
        seconds without progress (plus ``extra``) over all its attempts."""
        with translate_errors(action, self.errors):
            async with _CallDeadline(self.request_deadline + extra):
                yield

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
            yield cls(client, presign, settings.s3_bucket, settings.download_mode == "proxy",
                      settings.s3_request_deadline)

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (development and tests)."""
        async with self.call("create_bucket"):
            try:
                await self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if not _is_missing(exc):
                    raise
                await self.client.create_bucket(Bucket=self.bucket)

    async def check(self) -> None:
        """Raises StorageUnavailable unless the bucket answers (HeadBucket)."""
        try:
            async with self.call("head_bucket"):
                await self.client.head_bucket(Bucket=self.bucket)
        except ObjectNotFound:
            raise StorageUnavailable("the bucket does not exist") from None

    async def put_object(self, key: str, data: memoryview, crc32: int) -> None:
        async with self.call("put_object"):
            await self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=_body(data),
                ContentLength=len(data),
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=_b64crc(crc32),
            )

    async def open_sink(self, key: str) -> S3Sink:
        async with self.call("create_multipart_upload"):
            resp = await self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="CRC32"
            )
        return S3Sink(self, key, resp["UploadId"])

    def resume_sink(self, key: str, upload_id: str,
                    parts: dict[int, dict[str, str]]) -> S3Sink:
        return S3Sink(self, key, upload_id, parts)

    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            async with self.call("abort_multipart_upload"):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
        except ObjectNotFound:
            pass

    async def upload_exists(self, key: str, upload_id: str) -> bool:
        # ListParts: S3, rclone and moto all answer NoSuchUpload for an upload that is gone
        # (moto answers UploadPart and CompleteMultipartUpload with a 500 instead).
        try:
            async with self.call("list_parts"):
                await self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MaxParts=1
                )
        except ObjectNotFound:
            return False
        return True

    async def stat(self, key: str) -> ObjectInfo:
        async with self.call("head_object"):
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

    async def read(self, key: str, byte_range: tuple[int, int] | None = None
                   ) -> AsyncIterator[bytes]:
        extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        async with self.call("get_object"):
            resp = await self.client.get_object(Bucket=self.bucket, Key=key, **extra)
        async with resp["Body"] as body:
            # Each read of the body waits at most GATEWAY_S3_READ_TIMEOUT.
            with translate_errors("get_object", self.errors):
                async for chunk in _received(body.raw_stream.content, resp.get("ContentLength")):
                    yield chunk

    async def delete(self, key: str) -> None:
        try:
            async with self.call("delete_object"):
                await self.client.delete_object(Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            pass

    async def list_keys(self) -> list[str]:
        keys: list[str] = []
        # Each page is an answer: the deadline is one of no page arriving.
        async with self.call("list_objects_v2"):
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket):
                keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    async def list_open_uploads(self, prefix: str = "") -> list[OpenUpload]:
        uploads: list[OpenUpload] = []
        try:
            async with self.call("list_multipart_uploads"):
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
