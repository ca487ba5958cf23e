"""``PUT`` / ``GET`` / ``HEAD /api/v4/projects/:id/packages/generic/:name/:version/*file_name``.

Checks run in GitLab's order before a byte of an upload's body is read; ``Expect:
100-continue`` is answered only once they pass, so a refused client never sends its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from gateway import auth, keys, logs, naming, uploads
from gateway.api import validators
from gateway.api.present import package_file_record
from gateway.api.project_packages import deleted
from gateway.errors import (
    API_HEADERS,
    BrokenBody,
    ClientGone,
    NotFound,
    RecordNotFound,
    json_response,
)
from gateway.governance import gate, quotas
from gateway.governance.protection import Actor
from gateway.identity import policy
from gateway.models import PackageFile
from gateway.packages import (
    commit,
    conditional,
    deletion,
    deploy,
    digests,
    downloads,
    duplicates,
    latest,
)
from gateway.packages.etags import etag_of
from gateway.receiver import BodyReceiver
from gateway.storage import ObjectNotFound, StorageUnavailable, new_object_key

log = logging.getLogger("gateway.api")

_MARKER = "/packages/generic/"
# A proxied download's bytes are added to the metrics this many at a time (and at its end),
# not per piece received (four a MiB, each taking the counter's lock).
_COUNT_EVERY = 16 * 1024 * 1024


def project_ref(request: web.Request) -> str:
    return request.match_info["id"]


def generic_tail(request: web.Request) -> str:
    """The still percent-encoded path after ``/packages/generic/`` (GitLab splits it raw)."""
    raw = request.rel_url.raw_path
    return raw[raw.index(_MARKER) + len(_MARKER) :]


async def authenticate(request: web.Request, method: str) -> auth.Principal:
    creds = auth.Credentials.from_request(request.headers, request.query)
    return await request.app[keys.authenticator].authenticate(creds, method)


async def project_access(request: web.Request, who: auth.Principal
                         ) -> policy.ProjectAccess | None:
    settings = request.app[keys.settings]
    return await policy.project_access(
        request.app[keys.db], who, project_ref(request), allow_guest_pull=settings.allow_guest_pull
    )


def _framing_error(request: web.Request) -> HttpProcessingError | None:
    """A parse error aiohttp queued behind this request, if any.

    aiohttp's C parser reports a framing error found after the headers (a broken chunk, bytes
    beyond ``Content-Length``) as a failed *next* request instead of to the body being read,
    which would wait for bytes that never come. Reads aiohttp's private message queue; if that
    changes, the upload still ends, by the body read timeout.
    """
    for message, _ in getattr(request.protocol, "_messages", ()):
        exc = getattr(message, "exc", None)
        if isinstance(exc, HttpProcessingError):
            return exc
    return None


class RequestBody:
    """The request body as the upload service reads it (``async with``, around the upload).

    A client that hangs up becomes ClientGone; a body that breaks its framing becomes a 400
    (BrokenBody): a broken chunked encoding at once (a watchdog looks for it while the read
    waits), bytes beyond ``Content-Length`` when they arrive with the end of the body (later
    ones are answered by aiohttp as a malformed next request). A large ``Content-Length`` body
    is received straight into the part buffers (``direct``, gateway/receiver.py); if the
    upload ends before its body, the rest is discarded as it arrives and the answer closes the
    connection.
    """

    _WATCH_INTERVAL = 0.5
    # A body with at least this much still to come is received straight into the part
    # buffers (gateway/receiver.py); a smaller one is not worth taking the socket over.
    DIRECT_MIN = 1024 * 1024

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._content = request.content
        self._watchdog: asyncio.Task[None] | None = None
        self._receiver: BodyReceiver | None = None
        self._direct_tried = False
        metrics = request.app.get(keys.metrics)
        self._metric = metrics.upload_bytes if metrics is not None else None
        # The access line's bytes_in: what arrived, not what was declared.
        request[logs.BYTES_IN] = 0

    async def __aenter__(self) -> RequestBody:
        self._watchdog = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._watchdog is not None
        self._watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watchdog
        if self._receiver is not None and not self._receiver.handed_back:
            # The upload ended before its body did: the rest is dropped as it comes.
            self._receiver.discard_rest()

    def direct(self) -> BodyReceiver | None:
        """The rest of a ``Content-Length`` body, received straight into the part buffers;
        None for a chunked, encoded or small body, which aiohttp's parser goes on reading."""
        if not self._direct_tried:
            self._direct_tried = True
            self._receiver = self._take_over()
        return self._receiver

    def _take_over(self) -> BodyReceiver | None:
        request = self._request
        length = request.content_length
        handler = request.protocol
        if (length is None or length < self.DIRECT_MIN or self._chunked()
                or request.headers.get("Content-Encoding", "identity").lower() != "identity"
                or not isinstance(handler, RequestHandler)
                or not isinstance(self._content, StreamReader)):
            return None
        receiver = BodyReceiver.take_over(handler, self._content, length)
        if receiver is not None:
            receiver.on_received = self._received
        return receiver

    async def _watch(self) -> None:
        while not self._content.is_eof():
            await asyncio.sleep(self._WATCH_INTERVAL)
            if (exc := _framing_error(self._request)) is not None:
                # Wakes the pending read with the error.
                # Named by the body's framing: the watchdog may see bytes beyond a
                # Content-Length before the read does.
                self._content.set_exception(BrokenBody(_describe(exc, chunked=self._chunked())))
                return

    async def readany(self) -> bytes:
        if self._receiver is not None:
            return await self.readchunk()
        return await self._guarded(self._content.readany)

    async def readchunk(self) -> bytes:
        """One received piece as aiohttp holds it (readany joins queued pieces: a copy);
        ``b""`` once the body has ended, and at once for a body of length 0."""
        if not self._request.body_exists:
            # Content-Length: 0 (or none) is aiohttp's one shared EmptyStreamReader, whose
            # readchunk answers (b"", True) for ever after its first call: never ask it.
            return b""
        if self._receiver is not None:
            return await self._guarded(self._receiver.readchunk)

        async def piece() -> bytes:
            while True:
                data, end_of_http_chunk = await self._content.readchunk()
                # (b"", True) marks the end of a chunk of a chunked body, not of the body;
                # once the stream is at its end, nothing more can come, whatever it says.
                if data or not end_of_http_chunk or self._content.at_eof():
                    return data

        return await self._guarded(piece)

    async def _guarded(self, read: Callable[[], Awaitable[bytes]]) -> bytes:
        try:
            chunk = await read()
        except HttpProcessingError as exc:
            transport = self._request.transport
            if transport is None or transport.is_closing():
                raise ClientGone(str(exc)) from exc
            raise BrokenBody(_describe(exc, chunked=self._chunked())) from exc
        if not chunk and (exc := _framing_error(self._request)) is not None:
            raise BrokenBody(_describe(exc, chunked=self._chunked()))
        self._received(len(chunk))
        return chunk

    def _received(self, count: int) -> None:
        self._request[logs.BYTES_IN] += count
        if self._metric is not None:
            self._metric.inc(count)

    def _chunked(self) -> bool:
        return "chunked" in self._request.headers.get("Transfer-Encoding", "").lower()


def _describe(exc: HttpProcessingError, *, chunked: bool) -> str:
    if chunked:
        return "broken chunked transfer encoding"
    return "the body is longer than its Content-Length"


async def expect_nothing_yet(request: web.Request) -> None:
    """Replaces aiohttp's automatic ``100 Continue``: the handler sends it after its checks."""


async def send_continue(request: web.Request) -> None:
    """``100 Continue``, if the client asked for it (the checks have passed)."""
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


async def put_file(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.settings]
    who = await authenticate(request, "PUT")
    if who.anonymous:
        raise auth.Unauthorized()
    status = request.query.get("status")
    select = request.query.get("select")
    target = naming.file_target(generic_tail(request), status)
    access = policy.require_create_package(who, await project_access(request, who))
    naming.check_late_parameters(target, select)
    size = request.content_length if "chunked" not in request.headers.get(
        "Transfer-Encoding", ""
    ).lower() else None
    actor = Actor.of(who, access)
    defaults = quotas.Defaults(settings.packages_quota_bytes, settings.packages_quota_files)
    stats = app.get(keys.quota_stats)
    ctx = app[keys.uploads]
    key = new_object_key()
    # One round trip before the body: governance's refusals, the duplicate look, and the
    # pending row; a refusal from here to the body drops the row again (forget_pending).
    found = await gate.before_body_recording_pending(
        app[keys.db], actor, access.project_id, target, size, defaults, stats,
        pending=(key, ctx.instance))
    try:
        uploads.check_declared_size(size, settings.max_file_size)
        declared = digests.declared_digests(header_values(request, digests.UPLOAD_HEADERS))
        by_checksum = deploy.deploy_digest(request.headers.get("X-Checksum-Deploy"), declared,
                                           size)
        condition = conditional.WriteCondition.from_headers(
            request.headers.get("If-None-Match"), request.headers.get("If-Match")
        )
        if by_checksum is None:
            duplicates.refuse_duplicate(found, target)
            await conditional.check_before_body(app[keys.db], access.project_id, target,
                                                condition)
            await send_continue(request)
    except BaseException:
        await uploads.forget_pending(ctx, key)
        raise
    conditions = conditional.commit_checks(target, condition)
    if by_checksum is not None:
        await uploads.forget_pending(ctx, key)  # a deploy stores no bytes of its own
        row = await deploy.deploy(
            app[keys.db], who, access, target, declared, by_checksum, status=status,
            checks=gate.CommitChecks(actor, defaults, stats), conditions=conditions,
            allow_guest_pull=settings.allow_guest_pull,
        )
        return _stored_answer(request, row, select)
    started = time.monotonic()
    async with RequestBody(request) as body:
        stored = await uploads.receive(
            ctx, body, key, project_id=access.project_id, size=size, pending_recorded=True
        )
    await digests.check_stored(app[keys.db], app[keys.store], stored, declared)
    row = await commit.commit_file(
        app[keys.db], app[keys.store], access.project_id, target, stored,
        status=status, creator_id=who.user_id, checks=gate.CommitChecks(actor, defaults, stats),
        conditions=conditions,
    )
    if row.object_key != stored.key:
        app[keys.deletions].wake()  # identical bytes were stored already: drop the new copy
    if (metrics := app.get(keys.metrics)) is not None:
        metrics.upload_stored(stored.size, time.monotonic() - started)
    return _stored_answer(request, row, select)


def header_values(request: web.Request, names: tuple[str, ...]) -> dict[str, list[str]]:
    """Every value of each of ``names`` that the request carries."""
    return {name: values for name in names if (values := request.headers.getall(name, []))}


def _stored_answer(request: web.Request, row: PackageFile, select: str | None) -> web.Response:
    """GitLab's answer to a stored file, with ``Repr-Digest`` when the client asked for it."""
    extra = None
    if digests.wants_repr_digest(request.headers.getall("Want-Repr-Digest", [])):
        extra = {"Repr-Digest": digests.repr_digest(row.file_sha256)}
    if select == "package_file":
        return json_response(package_file_record(row), 200, extra)
    return json_response({"message": "201 Created"}, 201, extra)


async def _file_for_download(request: web.Request) -> tuple[policy.ProjectAccess, dict]:
    target = naming.download_target(generic_tail(request), latest_ok=True)
    order = "upload"
    if target.package_version == naming.LATEST_VERSION:
        order = latest.check_order(request.query.get("order"))
    who = await authenticate(request, request.method)
    found, row = await downloads.file_for_caller(
        request.app[keys.db], who, project_ref(request), target,
        allow_guest_pull=request.app[keys.settings].allow_guest_pull, order=order,
    )
    access = policy.require_read_package(who, found)
    if row is None:
        raise RecordNotFound()
    if row["needs_download_mark"]:
        await downloads.mark_downloaded(request.app[keys.db], row["package_id"], row["id"])
    return access, row


def _representation(row: dict) -> validators.Representation:
    return validators.Representation.of(etag_of(row["file_sha256"]), row["created_at"],
                                        row["size"])


def _validator_headers(row: dict, rep: validators.Representation) -> dict[str, str]:
    """The file's digests and validators, on every download answer (304 and 302 included)."""
    return {
        "X-Checksum-SHA256": row["file_sha256"],
        "X-Checksum-SHA1": row["file_sha1"],
        "X-Checksum-MD5": row["file_md5"],
        "Repr-Digest": digests.repr_digest(row["file_sha256"]),
        "ETag": rep.etag,
        "Last-Modified": rep.http_date,
        # Only through the @latest alias: the version it stood for.
        **({"X-Package-Version": row["package_version"]} if "package_version" in row else {}),
    }


def _file_headers(row: dict, rep: validators.Representation) -> dict[str, str]:
    return {
        **API_HEADERS,
        "Content-Type": "application/octet-stream",
        "Content-Disposition": naming.content_disposition(row["file_name"]),
        **_validator_headers(row, rep),
        "Accept-Ranges": "bytes",
    }


def _not_modified(row: dict, rep: validators.Representation) -> web.Response:
    return web.Response(status=304, headers={**API_HEADERS, **_validator_headers(row, rep)})


def _ranged(headers: dict[str, str], byte_range: tuple[int, int] | None, size: int) -> int:
    """Adds Content-Range for a partial answer; returns its status."""
    if byte_range is None:
        headers["Content-Length"] = str(size)
        return 200
    headers["Content-Range"] = validators.content_range(byte_range, size)
    headers["Content-Length"] = str(byte_range[1] - byte_range[0] + 1)
    return 206


async def head_file(request: web.Request) -> web.Response:
    """Answered here, never redirected: a URL presigned for GET refuses HEAD on real S3."""
    _, row = await _file_for_download(request)
    rep = _representation(row)
    if validators.not_modified(request.headers, rep):
        return _not_modified(row, rep)
    headers = _file_headers(row, rep)
    status = _ranged(headers, validators.requested_range(request.headers, rep), row["size"])
    return web.Response(status=status, headers=headers)


async def get_file(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[keys.settings]
    _, row = await _file_for_download(request)
    rep = _representation(row)
    if validators.not_modified(request.headers, rep):
        return _not_modified(row, rep)
    url = await app[keys.store].download_url(
        row["object_key"], naming.content_disposition(row["file_name"]),
        settings.presign_expires,
    )
    metrics = app.get(keys.metrics)
    if url is None:
        # Proxy mode: GitLab's local-storage answer, streamed from the store.
        return await _stream(request, row, rep)
    if metrics is not None:
        metrics.download_bytes.labels("redirect").inc(row["size"])
    # The presigned URL serves ranges itself (S3 honours Range and If-Range).
    return web.Response(
        status=302,
        headers={
            **API_HEADERS,
            "Location": url,
            **_validator_headers(row, rep),
            "Cache-Control": "no-store",
        },
    )


async def _stream(request: web.Request, row: dict, rep: validators.Representation
                  ) -> web.StreamResponse:
    byte_range = validators.requested_range(request.headers, rep)
    chunks = request.app[keys.store].read(row["object_key"], byte_range)
    try:
        first = await anext(chunks, b"")
    except ObjectNotFound:
        raise NotFound() from None
    headers = _file_headers(row, rep)
    headers["Content-Transfer-Encoding"] = "binary"
    status = _ranged(headers, byte_range, row["size"])
    length = int(headers.pop("Content-Length"))
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    metrics = request.app.get(keys.metrics)
    sent = metrics.download_bytes.labels("proxy") if metrics is not None else None
    unsent = 0  # bytes written and not yet counted
    try:
        if first:
            await response.write(first)
            unsent = len(first)
        async for chunk in chunks:
            await response.write(chunk)
            unsent += len(chunk)
            if unsent >= _COUNT_EVERY and sent is not None:
                sent.inc(unsent)
                unsent = 0
    except ConnectionError as exc:  # aiohttp's "Connection lost": the client hung up
        raise ClientGone(str(exc)) from exc
    except StorageUnavailable as exc:
        # The headers are out, so no 503 can follow: the connection is cut, and the client
        # sees fewer bytes than the Content-Length, never a file that looks complete.
        log.warning("proxied download cut: object storage stopped mid-stream: %s", exc,
                    extra={"path": request.path})
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        if sent is not None and unsent:
            sent.inc(unsent)
    await response.write_eof()
    return response


async def delete_by_path(request: web.Request) -> web.Response:
    """``DELETE`` a file (every upload of that name) or, on ``…/:name/:version``, the version.

    Not a GitLab route (GitLab deletes through the Packages API only); same rights as the
    Packages API delete (``destroy_package``). Checks run as on ``PUT``: credentials, then
    parameters, then project and role, then the package.
    """
    app = request.app
    who = await authenticate(request, "DELETE")
    if who.anonymous:
        raise auth.Unauthorized()
    tail = generic_tail(request)
    if tail.count("/") == 1:
        name, version = naming.package_target(tail)
        access = policy.require_destroy_package(who, await project_access(request, who))
        await deletion.delete_version_by_path(app[keys.db], Actor.of(who, access),
                                              access.project_id, name, version)
    else:
        target = naming.download_target(tail)
        access = policy.require_destroy_package(who, await project_access(request, who))
        await deletion.delete_file_by_path(app[keys.db], Actor.of(who, access),
                                           access.project_id, target)
    return deleted(request)
