"""``gateway upload FILE URL [--resume]``: a client of the IETF resumable upload protocol
(draft-ietf-httpbis-resumable-upload, interop version 8), with curl's ergonomics.

It creates an upload resource at the file's URL (``POST`` with ``Upload-Complete: ?0`` and the
length), remembers its URL in a small state file, and appends the file with ``PATCH``. A
connection that breaks, or a gateway that dies, costs a ``HEAD`` and the bytes not yet
acknowledged: the client asks for the offset and goes on from there, a few times with a
growing pause; an upload the server has lost (``404``: expired, cancelled, its bytes gone from
the object store) is started again from the first byte, once; ``--resume`` continues an
upload that an earlier run left unfinished. The
token is sent as ``PRIVATE-TOKEN`` and never printed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

INTEROP = "8"
_READ = 1024 * 1024
_BACKOFF = (1, 2, 4, 8, 16)


class UploadFailed(Exception):
    """The server refused the upload (the message is its answer), or it cannot be reached."""


@dataclass(frozen=True)
class Options:
    path: Path
    url: str
    token: str | None
    resume: bool = False
    chunk_size: int | None = None  # bytes per PATCH; None: the whole rest in one
    limit_rate: int | None = None  # bytes per second
    retries: int = len(_BACKOFF)
    state_dir: Path | None = None
    progress: bool | None = None  # None: when stderr is a terminal


def _state_dir(options: Options) -> Path:
    if options.state_dir is not None:
        return options.state_dir
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "packgate" / "uploads"


def _state_file(options: Options) -> Path:
    """One state file per (file, size, mtime, target URL): a changed file starts afresh."""
    st = options.path.stat()
    key = f"{options.path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{options.url}"
    return _state_dir(options) / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def _shown(url: str) -> str:
    """A URL without its query (which may carry a token), for messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class Progress:
    """One line on a terminal: percentage, bytes, rate; nothing when not a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.started = time.monotonic()
        self.first: int | None = None
        self._last = 0.0

    def show(self, done: int, *, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.first is None:
            self.first = done
        now = time.monotonic()
        if not final and now - self._last < 0.2:
            return
        self._last = now
        rate = (done - self.first) / max(now - self.started, 1e-6)
        pct = 100.0 * done / self.total if self.total else 100.0
        sys.stderr.write(f"\r{pct:5.1f}%  {_size(done)} / {_size(self.total)}  "
                         f"{_size(int(rate))}/s   ")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{n} B"


class Uploader:
    def __init__(self, options: Options, http: aiohttp.ClientSession) -> None:
        self.o = options
        self.http = http
        self.size = options.path.stat().st_size
        self.headers = {"Upload-Draft-Interop-Version": INTEROP}
        if options.token:
            self.headers["PRIVATE-TOKEN"] = options.token
        enabled = sys.stderr.isatty() if options.progress is None else options.progress
        self.progress = Progress(self.size, enabled)
        self.state = _state_file(options)
        self._complete = False  # as the last HEAD said

    async def run(self) -> dict[str, object]:
        location = self._saved() if self.o.resume else None
        offset = 0
        if location is not None:
            offset = await self._offset(location)
            if offset is None:
                location = None  # expired or cancelled: start again
            elif offset == self.size and self._complete:
                self.state.unlink(missing_ok=True)
                return {"message": "the upload was already complete"}
        if location is None:
            location = await self._create()
            offset = 0
        attempt, restarted = 0, False
        while True:
            try:
                answer = await self._append_all(location, offset)
            except (aiohttp.ClientError, TimeoutError, _Retry, _Gone) as exc:
                found = None
                if not isinstance(exc, _Gone):
                    if attempt == self.o.retries:
                        raise UploadFailed(f"giving up after {attempt + 1} attempts: {exc}"
                                           ) from exc
                    await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                    attempt += 1
                    found = await self._offset_or_retry(location)
                if found is None:
                    # The server lost the upload (expired, cancelled, or its bytes gone from
                    # the object store): what it had acknowledged is lost too. Once per run.
                    if restarted:
                        raise UploadFailed("the upload is gone from the server again") from exc
                    restarted = True
                    sys.stderr.write("gateway upload: the server lost the upload; starting "
                                     "again from the first byte\n")
                    location, offset = await self._create(), 0
                    continue
                if self._complete:  # the last request did finish it; its answer was lost
                    self.state.unlink(missing_ok=True)
                    return {"message": "the upload was already complete"}
                offset = found
                continue
            self.state.unlink(missing_ok=True)
            return answer

    def _saved(self) -> str | None:
        try:
            return json.loads(self.state.read_text())["location"]
        except (OSError, ValueError, KeyError):
            return None

    def _save(self, location: str) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"location": location, "url": _shown(self.o.url)}))
        tmp.replace(self.state)

    async def _create(self) -> str:
        headers = {**self.headers, "Upload-Complete": "?0", "Upload-Length": str(self.size),
                   "Content-Length": "0"}
        async with self.http.post(self.o.url, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 201 or "Location" not in resp.headers:
                raise UploadFailed(_refusal(resp.status, body))
            location = urljoin(str(resp.url), resp.headers["Location"])
        self._save(location)
        return location

    async def _offset(self, location: str) -> int | None:
        async with self.http.head(location, headers=self.headers) as resp:
            if resp.status == 404:
                return None
            if resp.status >= 400 or "Upload-Offset" not in resp.headers:
                raise UploadFailed(f"{resp.status} from the upload resource")
            self._complete = resp.headers.get("Upload-Complete") == "?1"
            return int(resp.headers["Upload-Offset"])

    async def _offset_or_retry(self, location: str) -> int | None:
        for pause in _BACKOFF:
            try:
                return await self._offset(location)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(pause)
        raise UploadFailed("the server cannot be reached")

    async def _append_all(self, location: str, offset: int) -> dict[str, object]:
        while True:
            end = self.size if self.o.chunk_size is None else min(self.size,
                                                                  offset + self.o.chunk_size)
            complete = end == self.size
            headers = {**self.headers, "Upload-Offset": str(offset),
                       "Upload-Complete": "?1" if complete else "?0",
                       "Content-Type": "application/partial-upload",
                       "Content-Length": str(end - offset)}
            async with self.http.patch(location, data=self._body(offset, end),
                                       headers=headers) as resp:
                body = await resp.read()
                if resp.status == 404:
                    raise _Gone(_refusal(resp.status, body))
                if resp.status == 409:
                    raise _Retry(_refusal(resp.status, body))
                if resp.status >= 500:
                    raise _Retry(f"{resp.status} from the server")
                if resp.status >= 400:
                    raise UploadFailed(_refusal(resp.status, body))
            self.progress.show(end, final=complete)
            if complete:
                try:
                    return json.loads(body) if body else {"status": resp.status}
                except ValueError:
                    return {"status": resp.status}
            offset = end

    async def _body(self, start: int, end: int) -> AsyncIterator[bytes]:
        started = time.monotonic()
        sent = 0
        with self.o.path.open("rb") as f:
            f.seek(start)
            while start + sent < end:
                block = f.read(min(_READ, end - start - sent))
                if not block:
                    raise UploadFailed("the file became shorter while it was uploaded")
                yield block
                sent += len(block)
                self.progress.show(start + sent)
                if self.o.limit_rate:
                    ahead = sent / self.o.limit_rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)


class _Retry(Exception):
    """A conflict (another append still running) or a server error: ask for the offset again."""


class _Gone(Exception):
    """The upload resource is not found (any more): create another."""


def _refusal(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
        message = data.get("message") or data.get("error") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")[:200]
    return f"{status}: {message}"


async def upload(options: Options) -> dict[str, object]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        return await Uploader(options, http).run()


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``500k`` or bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
