"""The upload-session engine: one resumable upload, continued by any gateway.

A session is a row (``upload_sessions``) and an S3 multipart upload; no process keeps anything
of it between requests. An append takes the session's advisory lock (another append at the
same time is refused, 409), reads the row, and streams the body into parts: the bytes of the
previous append's tail and then the body, cut at the part size. Each part is hashed (the
hash state carried in the row) and uploaded; only then is the offset advanced, in the same
UPDATE as the part list, the tail and the hash state. What is left at the end of a request,
shorter than S3's 5 MiB minimum part, is the new tail, kept in the row. The last append
uploads the last part, completes the multipart upload and commits the file through the very
commit a PUT uses (advisory lock, duplicate policy, the same rows).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import MiB
from gateway.db import packages as pq
from gateway.db import upload_sessions as q
from gateway.db.pool import Database
from gateway.errors import BadRequest, Conflict, GatewayError, NotFound
from gateway.models import PackageFile
from gateway.naming import FileTarget
from gateway.packages import commit
from gateway.resumable import sweep
from gateway.resumable.hashstate import ENGINE, HashStateMismatch, SessionHasher
from gateway.storage import ObjectNotFound, PartSink, StorageUnavailable, new_object_key
from gateway.uploads import (
    MAX_PARTS,
    BodyStream,
    FileTooLarge,
    Heartbeat,
    PartReader,
    StoredObject,
    UploadContext,
    check_declared_size,
    part_size_for,
)

log = logging.getLogger("gateway.resumable")

# S3's minimum size of every part but the last.
MIN_PART = 5 * MiB
OPEN, COMMITTED = 0, 1


class SessionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Upload")


class SessionBusy(Conflict):
    def __init__(self) -> None:
        super().__init__("409 Conflict - another request is appending to this upload")


_PROBLEM = "https://iana.org/assignments/http-problem-types#"


class OffsetMismatch(Conflict):
    """The client's offset is not the session's: both protocols answer 409 with the right one
    (tus reads ``Upload-Offset``, the IETF draft its problem type's ``expected-offset``)."""

    def __init__(self, expected: int, provided: int) -> None:
        super().__init__(f"409 Conflict - the upload's offset is {expected}, not {provided}")
        self.headers = {"Upload-Offset": str(expected)}
        self.expected = expected
        self.provided = provided

    def body(self) -> dict[str, Any]:
        return {**super().body(), "type": _PROBLEM + "mismatching-upload-offset",
                "title": "offset from request does not match offset of resource",
                "expected-offset": self.expected, "provided-offset": self.provided}


class UploadCompleted(BadRequest):
    def __init__(self) -> None:
        super().__init__("the upload is already complete")

    def body(self) -> dict[str, Any]:
        return {**super().body(), "type": _PROBLEM + "completed-upload",
                "title": "upload is already completed"}


class LengthMismatch(BadRequest):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)

    def body(self) -> dict[str, Any]:
        return {**super().body(), "type": _PROBLEM + "inconsistent-upload-length",
                "title": "inconsistent length values for upload"}


class ChecksumMismatch(GatewayError):
    """tus's 460: the request's bytes are not those the client hashed; none are kept."""

    status = 460

    def __init__(self) -> None:
        super().__init__("460 Checksum Mismatch")


class EngineChanged(Conflict):
    def __init__(self) -> None:
        super().__init__("409 Conflict - this upload was begun by a gateway of another "
                         "version and cannot be continued here; please start it again")


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    project_id: int
    target: FileTarget
    status: str | None
    creator_id: int | None
    length: int | None
    offset: int
    expires_at: dt.datetime
    committed: bool
    package_file_id: int | None
    metadata: dict[str, str]

    @classmethod
    def from_row(cls, row: Any) -> Session:
        target = FileTarget(row["package_name"], row["package_version"], row["file_name"],
                            row["file_path"])
        return cls(row["id"], row["project_id"], target, row["status"], row["creator_id"],
                   row["upload_length"], row["upload_offset"], row["expires_at"],
                   row["state"] == COMMITTED, row["package_file_id"],
                   q.decode_json(row["metadata"]))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Checksum:
    """tus ``Upload-Checksum``: the algorithm and the raw digest of one request's body."""

    algorithm: str  # "sha1" or "md5"
    digest: bytes


@dataclass(frozen=True, slots=True)
class Appended:
    session: Session
    file: PackageFile | None  # set by the append that completed the upload


async def create(ctx: UploadContext, project_id: int, target: FileTarget, *,
                 status: str | None, creator_id: int | None, length: int | None,
                 metadata: dict[str, str], lifetime_seconds: float) -> Session:
    """A new, empty session (no S3 request yet: the multipart upload starts with a part)."""
    check_declared_size(length, ctx.limits.max_file_size)
    async with ctx.db.connection() as conn:
        row = await q.insert_session(
            conn, secrets.token_hex(16), project_id, target.package_name,
            target.package_version, target.file_name, target.path, status, creator_id,
            length, new_object_key(), SessionHasher().state(), ENGINE, metadata,
            lifetime_seconds,
        )
    return Session.from_row(row)


async def find(db: Database, session_id: str, project_id: int) -> Session:
    """The session, if it belongs to ``project_id`` (another project's is not found)."""
    if not _plausible_id(session_id):
        raise SessionNotFound()
    async with db.connection() as conn:
        row = await q.find_session(conn, session_id, project_id)
    if row is None:
        raise SessionNotFound()
    return Session.from_row(row)


async def locate(ctx: UploadContext, session_id: str, project_id: int) -> Session:
    """``find``, and for an open session whose parts are in S3, a look there (one ListParts):
    a session whose multipart upload S3 no longer has (aborted by a lifecycle rule or an
    operator) is dropped and not found, so that a client resuming it starts again at once.
    S3 not answering leaves the session as the row says (its next append will tell)."""
    if not _plausible_id(session_id):
        raise SessionNotFound()
    async with ctx.db.connection() as conn:
        row = await q.find_session(conn, session_id, project_id)
    if row is None:
        raise SessionNotFound()
    if not await _lost(ctx, row):
        return Session.from_row(row)
    with contextlib.suppress(SessionBusy):  # an append is running: it will find out itself
        async with _locked(ctx.db, session_id):
            # Looked at again under the lock: an append may have completed it meanwhile.
            async with ctx.db.connection() as conn:
                row = await q.find_session(conn, session_id, project_id)
            if row is None:
                raise SessionNotFound()
            if not await _lost(ctx, row):
                return Session.from_row(row)
            await _drop(ctx, session_id, row["object_key"], row["upload_id"])
            raise SessionNotFound()
    return Session.from_row(row)


async def _lost(ctx: UploadContext, row: Any) -> bool:
    """An open session with parts in S3 whose multipart upload S3 says is gone."""
    return (row["state"] == OPEN and row["upload_id"] is not None
            and not await _upload_alive(ctx, row["object_key"], row["upload_id"]))


async def _upload_alive(ctx: UploadContext, key: str, upload_id: str) -> bool:
    try:
        return await ctx.store.upload_exists(key, upload_id)
    except StorageUnavailable:
        return True  # unknown: only S3's own answer that it is gone drops a session


async def _drop(ctx: UploadContext, session_id: str, key: str, upload_id: str | None) -> None:
    """The session's bytes are gone from S3: nothing of it may stay (under its lock)."""
    log.warning("upload session %s lost its multipart upload in S3; dropped", session_id)
    async with ctx.db.connection() as conn:
        await sweep.discard(conn, ctx.store, session_id, key, upload_id)
        await pq.delete_pending_upload(conn, key)


def _plausible_id(session_id: str) -> bool:
    return len(session_id) == 32 and all(c in "0123456789abcdef" for c in session_id)


@contextlib.asynccontextmanager
async def _locked(db: Database, session_id: str) -> AsyncIterator[None]:
    """The session's advisory lock, held by an open transaction for as long as the block runs
    (one pooled connection per append in progress); a crashed holder's lock goes with its
    connection."""
    async with db.connection() as conn, conn.transaction():
        if not await q.try_session_lock(conn, session_id):
            raise SessionBusy()
        yield


async def append(ctx: UploadContext, session_id: str, project_id: int, body: BodyStream, *,
                 offset: int, content_length: int | None, complete: bool | None = None,
                 length: int | None = None, checksum: Checksum | None = None,
                 lifetime_seconds: float,
                 on_ready: Callable[[], Awaitable[None]] | None = None,
                 checks: commit.CommitChecks | None = None) -> Appended:
    """Append ``body`` at ``offset``. ``complete`` (IETF) ends the upload with this request;
    None (tus) ends it when the declared length is reached. ``length`` declares the length
    if the session has none yet. ``on_ready`` runs once the session is held and the request
    fits it, before a byte of the body is read (``100 Continue``). ``checks``: governance's
    part of the commit, for the caller of the append that completes the upload (protection
    rules, quotas, the audit event)."""
    if not _plausible_id(session_id):
        raise SessionNotFound()
    async with _locked(ctx.db, session_id):
        async with ctx.db.connection() as conn:
            row = await q.find_session(conn, session_id, project_id)
            if row is None:
                raise SessionNotFound()
            if row["state"] != OPEN:
                raise UploadCompleted()
            if row["upload_offset"] != offset:
                raise OffsetMismatch(row["upload_offset"], offset)
            tail = await q.tail(conn, session_id) if row["tail_size"] else b""
        run = _Append(ctx, row, tail, lifetime_seconds)
        run.declare(length, content_length, complete)
        if on_ready is not None:
            await on_ready()

        async def beat() -> None:
            # The pending-upload row exists only while the object is assembled and committed
            # (until then this updates nothing); kept fresh, the sweeper leaves it alone.
            async with ctx.db.connection() as conn:
                await pq.heartbeat_pending_upload(conn, run.key)

        try:
            async with Heartbeat(beat, ctx.heartbeat_interval):
                stored = await _receive(ctx, run, body, content_length, checksum)
                file = (await _commit(ctx, row, stored, checks) if stored is not None
                        else None)
        finally:
            run.release()
        return Appended(Session.from_row(await _reload(ctx.db, session_id, project_id)), file)


async def _receive(ctx: UploadContext, run: _Append, body: BodyStream,
                   content_length: int | None, checksum: Checksum | None
                   ) -> StoredObject | None:
    """``run.receive``; if S3 no longer has the session's multipart upload (NoSuchUpload, or a
    server error for a gone upload, as moto answers), the session is dropped and the client
    told so (404: start again) rather than asked to retry what can never succeed."""
    try:
        return await run.receive(body, content_length, checksum)
    except (ObjectNotFound, StorageUnavailable) as exc:
        sink = run.sink
        if sink is None:
            raise  # no multipart upload: nothing S3 could have lost
        if isinstance(exc, StorageUnavailable) and (
                # S3 not answering at all is no sign of a lost upload (and the 503 is due now)
                not exc.answered or await _upload_alive(ctx, run.key, sink.upload_id)):
            raise
        await _drop(ctx, run.id, run.key, sink.upload_id)
        raise SessionNotFound() from exc


async def _reload(db: Database, session_id: str, project_id: int) -> Any:
    async with db.connection() as conn:
        return await q.find_session(conn, session_id, project_id)


async def _commit(ctx: UploadContext, row: Any, stored: StoredObject,
                  checks: commit.CommitChecks | None) -> PackageFile:
    """The object is complete: commit it as a PUT would; a refused commit ends the session
    (the commit has removed the object)."""
    target = FileTarget(row["package_name"], row["package_version"], row["file_name"],
                        row["file_path"])
    try:
        file = await commit.commit_file(ctx.db, ctx.store, row["project_id"], target, stored,
                                        status=row["status"], creator_id=row["creator_id"],
                                        checks=checks)
    except GatewayError:
        async with ctx.db.connection() as conn:
            await q.delete_session(conn, row["id"])
        raise
    async with ctx.db.connection() as conn:
        await q.mark_committed(conn, row["id"], file.id, stored.size)
    return file


async def terminate(ctx: UploadContext, session_id: str, project_id: int) -> None:
    """tus termination / IETF cancellation: the parts are aborted and the session is gone."""
    if not _plausible_id(session_id):
        raise SessionNotFound()
    async with _locked(ctx.db, session_id):
        async with ctx.db.connection() as conn:
            row = await q.find_session(conn, session_id, project_id)
        if row is None:
            raise SessionNotFound()
        if row["state"] == OPEN and row["upload_id"]:
            await ctx.store.abort_upload(row["object_key"], row["upload_id"])
        async with ctx.db.connection() as conn:
            await q.delete_session(conn, session_id)


class _Append:
    """One append request, in the order it happens: declare, receive parts, keep the tail or
    finish the object."""

    def __init__(self, ctx: UploadContext, row: Any, tail: bytes, lifetime: float) -> None:
        self.ctx, self.lifetime = ctx, lifetime
        self.id: str = row["id"]
        self.key: str = row["object_key"]
        self.project_id: int = row["project_id"]
        self.length: int | None = row["upload_length"]
        self.offset: int = row["upload_offset"]
        self.parts: dict[int, dict[str, Any]] = {
            int(n): p for n, p in q.decode_json(row["parts"]).items()  # type: ignore[union-attr]
        }
        try:
            self.hasher = SessionHasher(row["hash_state"], row["hash_engine"])
        except HashStateMismatch:
            raise EngineChanged() from None
        self.sink: PartSink | None = None
        if row["upload_id"]:
            self.sink = ctx.store.resume_sink(self.key, row["upload_id"], {
                n: {"etag": p["etag"], "crc32": p["crc32"]} for n, p in self.parts.items()})
        self.carry = tail  # acknowledged (and hashed) bytes not yet in a part
        self.complete: bool | None = None
        self.record_each = True
        self.recorded_offset: int | None = None  # what the row says now, once this recorded
        self.hashing: asyncio.Future[bytes] | None = None
        # Bytes this append holds (the tail read back, the body's), charged to the process's
        # buffer budget until their part has landed or the request ends.
        self.charged = 0
        # Parts on their way: (number, offset after it, hash state after it, the send).
        self.in_flight: collections.deque[
            tuple[int, int, asyncio.Future[bytes], asyncio.Task[None]]] = collections.deque()

    def declare(self, length: int | None, content_length: int | None,
                complete: bool | None) -> None:
        """Check the lengths before a byte is read."""
        if length is not None:
            if self.length is not None and length != self.length:
                raise LengthMismatch("the upload's length cannot change")
            if length < self.offset:
                raise LengthMismatch("the length is below the upload's offset")
            check_declared_size(length, self.ctx.limits.max_file_size)
            self.length = length
        if content_length is not None:
            end = self.offset + content_length
            if self.length is not None and end > self.length:
                raise LengthMismatch("the body goes past the upload's length")
            if complete and self.length is not None and end != self.length:
                raise LengthMismatch("the upload ends before its length")
            check_declared_size(end, self.ctx.limits.max_file_size)
        self.complete = complete

    async def receive(self, body: BodyStream, content_length: int | None,
                      checksum: Checksum | None) -> StoredObject | None:
        """Stream the body into parts; the whole object when this request completes it.

        As for a PUT, a part is hashed and sent while the next is read, with at most
        ``parts_in_flight`` on their way; parts are acknowledged in order as they land.
        """
        reader = PartReader(body, self.ctx.buffers, self.ctx.limits.body_read_timeout)
        await self.ctx.buffers.reserve(len(self.carry))
        self.charged += len(self.carry)
        # With a checksum nothing may be kept before the whole body is verified.
        self.record_each = checksum is None
        summer = hashlib.new(checksum.algorithm) if checksum is not None else None
        received = 0
        try:
            while True:
                want = self._part_size() - len(self.carry)
                if content_length is not None:
                    want = min(want, content_length - received)
                    if want <= 0:
                        break
                data = await self._take(reader, want)
                if not data:
                    break
                received += len(data)
                self.offset += len(data)
                self._check_growth()
                if summer is not None:
                    summer.update(data)
                self._hash(data)
                self.carry = self.carry + data if self.carry else data
                if len(self.carry) >= self._part_size():
                    await self._start_part(self.carry)
                    self.carry = b""
            if content_length is None or received == content_length:
                await reader.expect_end()
            await self._land_all()
        except BaseException:
            await self._land_what_arrives()
            raise
        finally:
            reader.close()
        await self._hashed()
        if summer is not None and summer.digest() != checksum.digest:  # type: ignore[union-attr]
            raise ChecksumMismatch()
        return await self._settle()

    async def _take(self, reader: PartReader, want: int) -> bytes:
        """The next ``want`` bytes of the body as ``bytes`` (the hash library takes no views),
        still charged to the process's buffer budget until their part has landed."""
        part = await reader.part(want)
        data = bytes(part.view)
        if part.buf is not None:
            self.ctx.buffers.release(part.buf, keep=len(data))
        # (a part that is one received piece is charged already, and stays so)
        self.charged += len(data)
        return data

    def _uncharge(self, nbytes: int) -> None:
        self.ctx.buffers.unreserve(nbytes)
        self.charged -= nbytes

    def release(self) -> None:
        """The request is over: what it still holds (a tail now in the row, the bytes of a
        failed request, parts cancelled) leaves the budget."""
        self._uncharge(self.charged)

    def _hash(self, data: bytes) -> None:
        """Queue ``data`` behind what is being hashed; ``self.hashing`` resolves to the state
        after it."""
        previous = self.hashing

        async def run() -> bytes:
            if previous is not None:
                await previous
            await self.hasher.feed(data, self.ctx.pools.md5, self.ctx.pools.sha)
            return self.hasher.state()

        self.hashing = asyncio.ensure_future(run())

    async def _hashed(self) -> bytes:
        if self.hashing is None:
            return self.hasher.state()
        return await self.hashing

    async def _start_part(self, data: bytes) -> None:
        """Send ``data`` as the next part, after a slot among those in flight is free."""
        while len(self.in_flight) >= self.ctx.limits.parts_in_flight:
            await self._land_oldest()
        await self._sink()  # opened once, before any part is sent
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise FileTooLarge()
        self.parts[number] = {"size": len(data)}  # reserved: the next part gets the next number
        assert self.hashing is not None
        self.in_flight.append(
            (number, self.offset, self.hashing, asyncio.create_task(self._send(number, data))))

    async def _land_oldest(self) -> None:
        number, offset, hashing, task = self.in_flight.popleft()
        try:
            await task
        finally:
            self._uncharge(self.parts[number]["size"])
        state = await hashing
        if self.record_each:
            await self._record(state, offset, tail=b"", upto=number)

    async def _land_all(self) -> None:
        while self.in_flight:
            await self._land_oldest()

    async def _land_what_arrives(self) -> None:
        """After a failure: the parts already on their way are kept (and acknowledged) if
        they get there, in order; from the first that does not, the rest are dropped."""
        with contextlib.suppress(BaseException):
            await self._land_all()
        for *_, task in self.in_flight:
            task.cancel()
        await asyncio.gather(*(task for *_, task in self.in_flight), return_exceptions=True)
        self.in_flight.clear()

    def _part_size(self) -> int:
        return part_size_for(len(self.parts) + 1, self.length, self.ctx.limits.part_size)

    def _check_growth(self) -> None:
        """A body of unknown length may not run past the declared length or the limit."""
        if self.length is not None and self.offset > self.length:
            raise LengthMismatch("the body goes past the upload's length")
        limit = self.ctx.limits.max_file_size
        if limit > 0 and self.offset >= limit:
            raise FileTooLarge()

    async def _settle(self) -> StoredObject | None:
        """After the body: finish the object, or keep what is left for the next append."""
        if self.length is not None and self.offset > self.length:
            raise LengthMismatch("the body goes past the upload's length")
        done = self.complete if self.complete is not None else (
            self.length is not None and self.offset == self.length)
        if done:
            if self.length is not None and self.offset != self.length:
                raise LengthMismatch("the upload ends before its length")
            return await self._finish()
        if len(self.carry) >= MIN_PART:
            await self._start_part(self.carry)
            self.carry = b""
            await self._land_all()
        if self.carry or self.recorded_offset != self.offset:
            # (a request that ended on a part has recorded everything as that part landed)
            await self._record(await self._hashed(), self.offset)
        return None

    async def _send(self, number: int, data: bytes) -> None:
        view = memoryview(data)
        crc = await self.ctx.pools.crc32(view)
        assert self.sink is not None
        await self.sink.write_part(number, view, crc)
        self.parts[number] = {**self.sink.recorded(number), "size": len(data)}

    async def _sink(self) -> PartSink:
        if self.sink is None:
            self.sink = await self.ctx.store.open_sink(self.key)
            async with self.ctx.db.connection() as conn:
                await q.set_upload_id(conn, self.id, self.sink.upload_id)
        return self.sink

    async def _record(self, state: bytes, offset: int, *, tail: bytes | None = None,
                      upto: int | None = None) -> None:
        """Acknowledge bytes [0, offset): the parts up to ``upto`` (all), then the tail."""
        parts = {str(n): p for n, p in self.parts.items()
                 if "etag" in p and (upto is None or n <= upto)}
        async with self.ctx.db.connection() as conn:
            await q.record_progress(conn, self.id, parts, self.carry if tail is None else tail,
                                    offset, state, self.length, self.lifetime)
        self.recorded_offset = offset

    async def _finish(self) -> StoredObject:
        """The last part, then the whole object; if that fails, the session is over (S3 has
        aborted the parts) and nothing of it is left."""
        try:
            return await self._assemble()
        except BaseException:
            with contextlib.suppress(Exception):
                async with self.ctx.db.connection() as conn:
                    await q.delete_session(conn, self.id)
                if self.sink is not None:
                    await self.sink.abort()
                await self.ctx.store.delete(self.key)
                async with self.ctx.db.connection() as conn:
                    await pq.delete_pending_upload(conn, self.key)
            raise

    async def _assemble(self) -> StoredObject:
        """With a pending-upload row around it as a PUT has (the commit drops it; the sweeper
        settles it if this process dies now)."""
        async with self.ctx.db.connection() as conn:
            await pq.insert_pending_upload(conn, self.key, self.ctx.instance, self.project_id)
            if self.sink is not None:
                await pq.set_pending_upload_id(conn, self.key, self.sink.upload_id)
        if self.sink is None:
            view = memoryview(self.carry)
            await self.ctx.store.put_object(self.key, view, await self.ctx.pools.crc32(view))
        else:
            if self.carry:
                await self._start_part(self.carry)
                self.carry = b""
                await self._land_all()
            await self.sink.commit()
        return StoredObject(self.key, self.offset, self.hasher.digests(), len(self.parts))
