"""Counting what an upload costs in round trips: TCP proxies between a gateway and its
PostgreSQL and S3 servers that pass every byte through unchanged and count, on the way to the
server, PostgreSQL round trips (each ``Sync`` of the extended protocol and each simple
``Query``: the client waits for an answer after each) and S3 requests (by action, from the
request line). Run on a thread of the benchmark's own, with its own event loop; the counts are
read as differences around the uploads being counted."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class _PgCounter:
    """Follows the client's side of the PostgreSQL protocol: untyped start-up messages (an
    SSL or GSS request may come first), then typed messages (type byte, int32 length)."""

    def __init__(self, counts: Counter[str]) -> None:
        self._counts = counts
        self._buf = bytearray()
        self._started = False

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            if not self._started:
                if len(self._buf) < 8:
                    return
                length, code = struct.unpack("!ii", self._buf[:8])
                if len(self._buf) < length:
                    return
                del self._buf[:length]
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    self._started = True
                continue
            if len(self._buf) < 5:
                return
            kind = chr(self._buf[0])
            (length,) = struct.unpack("!i", self._buf[1:5])
            if len(self._buf) < 1 + length:
                return
            del self._buf[: 1 + length]
            if kind in ("S", "Q"):
                self._counts["round trips"] += 1


def s3_action(method: str, target: str) -> str:
    """The S3 action of a request line (path-style addressing)."""
    parts = urlsplit(target)
    q = parse_qs(parts.query, keep_blank_values=True)
    has_key = parts.path.strip("/").count("/") >= 1
    if method == "PUT":
        return "UploadPart" if "partNumber" in q else ("PutObject" if has_key else "CreateBucket")
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        return "CompleteMultipartUpload" if "uploadId" in q else "POST"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        if "uploads" in q:
            return "ListMultipartUploads"
        return "GetObject" if has_key else "ListObjects"
    return method


class _HttpCounter:
    """Follows the client's side of HTTP/1.1: request head, then a body of Content-Length
    bytes or chunked."""

    def __init__(self, counts: Counter[str]) -> None:
        self._counts = counts
        self._buf = bytearray()
        self._body_left = 0
        self._chunked = False

    def feed(self, data: bytes) -> None:
        self._buf += data
        while self._step():
            pass

    def _step(self) -> bool:
        if self._body_left:
            take = min(self._body_left, len(self._buf))
            del self._buf[:take]
            self._body_left -= take
            return bool(self._buf) and not self._body_left
        if self._chunked:
            return self._chunk()
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        method, target, _ = head[0].split(" ", 2)
        self._counts[s3_action(method, target)] += 1
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        self._body_left = int(headers.get("content-length", "0") or 0)
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        return True

    def _chunk(self) -> bool:
        end = self._buf.find(b"\r\n")
        if end < 0:
            return False
        size = int(bytes(self._buf[:end]).split(b";")[0], 16)
        if size == 0:
            # The last chunk, then (no trailers from our clients) the closing CRLF.
            if len(self._buf) < end + 4:
                return False
            del self._buf[: end + 4]
            self._chunked = False
            return True
        if len(self._buf) < end + 2 + size + 2:
            return False
        del self._buf[: end + 2 + size + 2]
        return True


class CountingProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_port``, counting with ``make_counter``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, upstream_port: int,
                 make_counter: Callable[[Counter[str]], _PgCounter | _HttpCounter]) -> None:
        self.counts: Counter[str] = Counter()
        self._loop = loop
        self._upstream = upstream_port
        self._make_counter = make_counter
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        except OSError:
            writer.close()
            return
        counter = self._make_counter(self.counts)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       count: bool) -> None:
            try:
                while data := await src.read(1 << 20):
                    if count:
                        counter.feed(data)
                    dst.write(data)
                    await dst.drain()
            except (OSError, ValueError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def snapshot(self) -> Counter[str]:
        return Counter(self.counts)


@contextlib.contextmanager
def counting_proxies(pg_port: int, s3_port: int) -> Iterator[tuple[CountingProxy,
                                                                   CountingProxy]]:
    """A PostgreSQL and an S3 counting proxy on a thread of their own, for the block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="counting-proxies")
    thread.start()
    pg = CountingProxy(loop, pg_port, _PgCounter)
    s3 = CountingProxy(loop, s3_port, _HttpCounter)
    for proxy in (pg, s3):
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
    try:
        yield pg, s3
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
