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

import hashlib
import http.client
import json
import os
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit, urlunsplit

INTEROP = "8"
_READ = 1024 * 1024
# sendfile(2) hands the kernel this much at a time (the progress line moves between).
_SENDFILE = 8 * 1024 * 1024
_BACKOFF = (1, 2, 4, 8, 16)
_CONNECT_TIMEOUT = 30.0
_READ_TIMEOUT = 600.0
# What a failed request raises: a broken or refused connection, a timeout, a mangled answer.
NETWORK_ERRORS = (OSError, http.client.HTTPException)


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


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Connection:
    """One kept-alive connection to the server, opened again after a failure or a close.

    The standard library's client: it starts in milliseconds (the client is a process per
    upload, and its start counts against every upload) and sends a file's bytes with
    ``sendfile(2)``, without copying them through the interpreter.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UploadFailed(f"not an http(s) URL: {_shown(url)}")
        self.origin = (parts.scheme, parts.netloc)
        self.tls = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._conn: http.client.HTTPConnection | None = None

    def _open(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.tls:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=_CONNECT_TIMEOUT,
                    context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=_CONNECT_TIMEOUT)
            self._conn.connect()
            assert self._conn.sock is not None
            self._conn.sock.settimeout(_READ_TIMEOUT)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, url: str, headers: dict[str, str],
                send_body: Callable[[http.client.HTTPConnection], None] | None = None
                ) -> Answer:
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self.origin:
            raise UploadFailed(f"the server sent the upload elsewhere: {_shown(url)}")
        target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        conn = self._open()
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            if send_body is not None:
                try:
                    send_body(conn)
                except TimeoutError:
                    raise
                except OSError:
                    # The server may have answered early (a refusal) and closed: read that
                    # answer if it is there, else this is a broken connection.
                    pass
            resp = conn.getresponse()
            answer = Answer(resp.status, resp.headers, resp.read())
        except BaseException:
            self.close()
            raise
        if resp.will_close:
            self.close()
        return answer


class Uploader:
    def __init__(self, options: Options, conn: Connection) -> None:
        self.o = options
        self.conn = conn
        self.size = options.path.stat().st_size
        self.headers = {"Upload-Draft-Interop-Version": INTEROP}
        if options.token:
            self.headers["PRIVATE-TOKEN"] = options.token
        enabled = sys.stderr.isatty() if options.progress is None else options.progress
        self.progress = Progress(self.size, enabled)
        self.state = _state_file(options)
        self._complete = False  # as the last HEAD said

    def run(self) -> dict[str, object]:
        location = self._saved() if self.o.resume else None
        offset = 0
        if location is not None:
            offset = self._offset(location)
            if offset is None:
                location = None  # expired or cancelled: start again
            elif offset == self.size and self._complete:
                self.state.unlink(missing_ok=True)
                return {"message": "the upload was already complete"}
        if location is None:
            location = self._create()
            offset = 0
        attempt, restarted = 0, False
        while True:
            try:
                answer = self._append_all(location, offset)
            except (*NETWORK_ERRORS, _Retry, _Gone) as exc:
                found = None
                if not isinstance(exc, _Gone):
                    if attempt == self.o.retries:
                        raise UploadFailed(f"giving up after {attempt + 1} attempts: {exc}"
                                           ) from exc
                    time.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                    attempt += 1
                    found = self._offset_or_retry(location)
                if found is None:
                    # The server lost the upload (expired, cancelled, or its bytes gone from
                    # the object store): what it had acknowledged is lost too. Once per run.
                    if restarted:
                        raise UploadFailed("the upload is gone from the server again") from exc
                    restarted = True
                    sys.stderr.write("gateway upload: the server lost the upload; starting "
                                     "again from the first byte\n")
                    location, offset = self._create(), 0
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

    def _create(self) -> str:
        headers = {**self.headers, "Upload-Complete": "?0", "Upload-Length": str(self.size),
                   "Content-Length": "0"}
        resp = self.conn.request("POST", self.o.url, headers)
        if resp.status != 201 or "Location" not in resp.headers:
            raise UploadFailed(_refusal(resp.status, resp.body))
        location = urljoin(self.o.url, resp.headers["Location"])
        self._save(location)
        return location

    def _offset(self, location: str) -> int | None:
        resp = self.conn.request("HEAD", location, self.headers)
        if resp.status == 404:
            return None
        if resp.status >= 400 or "Upload-Offset" not in resp.headers:
            raise UploadFailed(f"{resp.status} from the upload resource")
        self._complete = resp.headers.get("Upload-Complete") == "?1"
        return int(resp.headers["Upload-Offset"])

    def _offset_or_retry(self, location: str) -> int | None:
        for pause in _BACKOFF:
            try:
                return self._offset(location)
            except NETWORK_ERRORS:
                time.sleep(pause)
        raise UploadFailed("the server cannot be reached")

    def _append_all(self, location: str, offset: int) -> dict[str, object]:
        with self.o.path.open("rb") as f:
            while True:
                end = self.size if self.o.chunk_size is None else min(
                    self.size, offset + self.o.chunk_size)
                complete = end == self.size
                headers = {**self.headers, "Upload-Offset": str(offset),
                           "Upload-Complete": "?1" if complete else "?0",
                           "Content-Type": "application/partial-upload",
                           "Content-Length": str(end - offset)}
                resp = self.conn.request(
                    "PATCH", location, headers,
                    lambda conn, start=offset, stop=end: self._send(conn, f, start, stop))
                if resp.status == 404:
                    raise _Gone(_refusal(resp.status, resp.body))
                if resp.status == 409:
                    raise _Retry(_refusal(resp.status, resp.body))
                if resp.status >= 500:
                    raise _Retry(f"{resp.status} from the server")
                if resp.status >= 400:
                    raise UploadFailed(_refusal(resp.status, resp.body))
                self.progress.show(end, final=complete)
                if complete:
                    try:
                        return json.loads(resp.body) if resp.body else {"status": resp.status}
                    except ValueError:
                        return {"status": resp.status}
                offset = end

    def _send(self, conn: http.client.HTTPConnection, f: BinaryIO, start: int,
              end: int) -> None:
        """Bytes ``start..end`` of the file as the request body: by ``sendfile(2)`` on a
        plain connection at full speed, else read and written a MiB at a time."""
        assert conn.sock is not None
        if not self.conn.tls and not self.o.limit_rate:
            sent = start
            while sent < end:
                n = conn.sock.sendfile(f, sent, min(_SENDFILE, end - sent))
                if n == 0:
                    raise UploadFailed("the file became shorter while it was uploaded")
                sent += n
                self.progress.show(sent)
            return
        started = time.monotonic()
        f.seek(start)
        sent = 0
        while start + sent < end:
            block = f.read(min(_READ, end - start - sent))
            if not block:
                raise UploadFailed("the file became shorter while it was uploaded")
            conn.send(block)
            sent += len(block)
            self.progress.show(start + sent)
            if self.o.limit_rate:
                ahead = sent / self.o.limit_rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)


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


def upload(options: Options) -> dict[str, object]:
    conn = Connection(options.url)
    try:
        return Uploader(options, conn).run()
    finally:
        conn.close()


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``500k`` or bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
