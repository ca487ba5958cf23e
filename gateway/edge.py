"""The HTTP edge: what happens to a connection before a handler sees a request.

- Every request the HTTP parser refuses (bad request line, invalid or duplicate headers, a
  broken ``Content-Length``, heads too large) is answered in GitLab's JSON shape, and logged by
  kind, never with the bytes that were refused (they may hold a token).
- A request's head must arrive within ``header_timeout`` (a fresh connection too); an idle
  keep-alive connection is closed after ``keepalive_timeout``; a head still incomplete at its
  deadline is answered ``408`` if any of it arrived, otherwise the connection is just closed.
- At most ``max_connections`` connections per process: past the cap a new connection gets a
  ``503`` and is closed at once, so the ones in progress keep their share of the process.
- A client that hangs up is logged as 499, without a traceback.

aiohttp offers no setting for these, so they sit on aiohttp's documented extension points: a
``web.Server`` subclass makes the connection protocol (a ``RequestHandler`` subclass overriding
``handle_error``), and ``EdgeRunner`` builds that server for the application. The few private
attributes read are listed in ``ALIASED_INTERNALS``; tests/security/test_aiohttp_contract.py
fails if aiohttp moves them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestHandler

from gateway import errors
from gateway.config import Settings
from gateway.errors import ClientGone, GatewayError
from gateway.logs import REFUSED

log = logging.getLogger("gateway.edge")
access_log = logging.getLogger("aiohttp.access")

# A request head (request line and headers together) larger than this is refused with 431;
# aiohttp's own limits apply to each line (app.MAX_HEADER_SIZE) and to the number of headers.
MAX_HEAD_BYTES = 64 * 1024
# A refused connection may read its 503 for this long before it is closed.
_REFUSAL_LINGER = 1.0
# Beyond this many refused connections still lingering, new ones are closed without a word.
_MAX_LINGERING = 256
# "connection limit reached" is logged at most this often.
_REFUSAL_LOG_INTERVAL = 10.0

# What this module reads of aiohttp that is not public API (checked by a test).
ALIASED_INTERNALS = {
    "web.Server": ("_loop", "_kwargs"),
    "RequestHandler": ("_messages", "_force_close", "_loop"),
}


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    header_timeout: float = 20.0
    keepalive_timeout: float = 75.0
    max_connections: int = 1024

    @classmethod
    def from_settings(cls, s: Settings) -> EdgeLimits:
        return cls(s.header_timeout, s.keepalive_timeout, s.max_connections)


class HeadTimeout(GatewayError):
    status = 408

    def __init__(self) -> None:
        super().__init__("408 Request Timeout - the request headers did not arrive in time")


class UriTooLong(GatewayError):
    status = 414

    def __init__(self) -> None:
        super().__init__("414 URI Too Long")


class HeaderFieldsTooLarge(GatewayError):
    status = 431

    def __init__(self) -> None:
        super().__init__("431 Request Header Fields Too Large")


class TooManyConnections(errors.ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("too many connections, please retry", retry_after=5)


def refusal(exc: HttpProcessingError, *, in_request_line: bool) -> tuple[GatewayError, str]:
    """The answer to a request the parser refused, and its kind for the log.

    Only the exception's type and aiohttp's/llhttp's fixed reason (the text before the first
    colon) are looked at, to pick one of our own texts; the quoted bytes are never used.
    """
    reason = (exc.message if isinstance(exc.message, str) else "").split(":", 1)[0].lower()
    if isinstance(exc, LineTooLong):
        if in_request_line:
            return UriTooLong(), "request line too long"
        return HeaderFieldsTooLarge(), "header too large"
    if "too many headers" in reason:
        return HeaderFieldsTooLarge(), "too many headers"
    content_length = "content-length" in reason or (
        isinstance(exc, InvalidHeader) and exc.hdr.lower() == "content-length"
    )
    if content_length and "transfer-encoding" in reason:
        detail = "Content-Length together with Transfer-Encoding"
    elif content_length:
        detail = "invalid Content-Length"
    elif isinstance(exc, TransferEncodingError) or "chunk" in reason:
        detail = "broken chunked transfer encoding"
    elif "transfer-encoding" in reason or "transfer encoding" in reason:
        detail = "invalid Transfer-Encoding"
    elif "duplicate" in reason:
        detail = "duplicate header"
    elif "host" in reason:
        detail = "missing Host header"
    elif isinstance(exc, BadHttpMethod | BadStatusLine | InvalidURLError) or any(
        word in reason for word in ("method", "url", "version", "status", "request line")
    ):
        detail = "invalid request line"
    elif "header" in reason or isinstance(exc, InvalidHeader):
        detail = "invalid header"
    else:
        detail = "malformed request"
    return errors.BadRequest(detail), detail


def raw_answer(err: GatewayError) -> bytes:
    """``err`` as a complete HTTP/1.1 response, for answers given outside aiohttp's cycle."""
    body = orjson.dumps(err.body())
    lines = [f"HTTP/1.1 {err.status} {HTTPStatus(err.status).phrase}",
             "Content-Type: application/json", f"Content-Length: {len(body)}",
             "Connection: close"]
    lines += [f"{k}: {v}" for k, v in {**errors.API_HEADERS, **err.headers}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _peer(transport: asyncio.BaseTransport | None) -> str | None:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return peer[0] if isinstance(peer, tuple) and peer else None


def _log_answer(status: int, kind: str, remote: str | None) -> None:
    """An access-log line for an answer given outside aiohttp's request cycle."""
    access_log.info("request", extra={
        "method": "-", "path": "-", "status": status, "bytes_in": None, "ms": None,
        "remote": remote, "refused": kind,
    })


class EdgeProtocol(RequestHandler):
    """aiohttp's connection protocol, with a deadline on request heads, a limit on their total
    size, and GitLab-shaped answers to whatever the parser refuses."""

    __slots__ = (
        "_awaiting_head",
        "_finished",
        "_head_bytes",
        "_head_timer",
        "_limits",
        "_line_bytes",
        "_line_done",
    )

    def __init__(self, manager: web.Server, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        # True from the end of one request to the end of the next head; bytes received
        # meanwhile are a head (counted and timed), all others belong to a body.
        self._awaiting_head = True
        # The body of the last answered request: once it is complete, new bytes start a head.
        self._finished: Any = None
        self._head_bytes = 0
        self._line_bytes = 0
        self._line_done = False

    # --- the head deadline ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # A connection that never sends a request is held no longer than a slow head.
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self._limits.header_timeout > 0:
            self._head_timer = self._loop.call_later(
                self._limits.header_timeout, self._head_timed_out
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._awaiting_head or self.transport is None:
            return
        if self._head_bytes:
            # The client started a request: tell it why it ends.
            self._answer_and_close(HeadTimeout(), "request head timed out")
        else:
            self.force_close()

    def _answer_and_close(self, err: GatewayError, kind: str) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(raw_answer(err))
            _log_answer(err.status, kind, _peer(transport))
        self.force_close()

    def data_received(self, data: bytes) -> None:
        if (not self._awaiting_head and self._finished is not None and self._finished.is_eof()
                and not self._messages):
            # The last request is answered and its body read: these bytes are the next head.
            self._finished = None
            self._awaiting_head = True
            self._head_bytes = self._line_bytes = 0
            self._line_done = False
        if not self._awaiting_head or not data or self._force_close:
            super().data_received(data)
            return
        self._arm_head_timer()
        # Refused before the parser sees it: a head it completed would reach a handler.
        end = data.find(b"\r\n\r\n")
        if self._head_bytes + (len(data) if end < 0 else end) > MAX_HEAD_BYTES:
            self._answer_and_close(HeaderFieldsTooLarge(), "request head too large")
            return
        self._count_head(data)
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:
            # The head is complete (or refused by the parser): the body is the handler's.
            self._awaiting_head = False
            self._cancel_head_timer()

    def _count_head(self, data: bytes) -> None:
        self._head_bytes += len(data)
        if not self._line_done:
            end = data.find(b"\n")
            self._line_bytes += len(data) if end < 0 else end
            self._line_done = end >= 0

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        # Once this body is read (aiohttp may still discard the rest of it), the next bytes
        # start a new head; aiohttp's keep-alive timer covers the idle time until they come.
        self._finished = request.content
        return result

    # --- answers to refused requests ------------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a failed request, made GitLab's: never plain text, never the
        refused bytes in a log line; a client that left is 499, without a traceback."""
        if _client_gone(exc):
            gone = web.Response(status=499)
            gone.force_close()
            return gone
        if isinstance(exc, HttpProcessingError):
            in_line = not self._line_done or self._line_bytes >= self.max_line_size
            err, kind = refusal(exc, in_request_line=in_line)
            request[REFUSED] = kind
        elif status == 504:
            log.warning("answered 504: the handler did not finish in time")
            err = errors.ApiError("504 Gateway Timeout", 504)
        else:
            log.error("unexpected error outside the application", exc_info=exc)
            err = GatewayError()
        if request.writer.output_size > 0:
            # Part of an answer is out: the connection cannot carry another one.
            raise ConnectionError("an answer was already being sent")
        resp = errors.render(err)
        resp.force_close()
        return resp


def _client_gone(exc: BaseException | None) -> bool:
    return isinstance(exc, ClientGone | ConnectionResetError | BrokenPipeError)


class _Refusal(asyncio.Protocol):
    """A connection past the cap: a 503, then closed once the client has had a moment to read
    it (closing at once with its request unread would make the kernel reset the connection
    and lose the answer)."""

    def __init__(self, server: EdgeServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        if self._server.lingering >= _MAX_LINGERING:
            transport.abort()
            return
        self._server.lingering += 1
        transport.write(raw_answer(TooManyConnections()))
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(_REFUSAL_LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # read and dropped: it is what keeps the answer from being reset

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._server.lingering -= 1


class EdgeServer(web.Server):
    """aiohttp's Server, making EdgeProtocol connections up to ``max_connections``."""

    def __init__(self, base: web.Server, limits: EdgeLimits) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.limits = limits
        self.open = 0  # counted when made, so a burst of accepts cannot overshoot the cap
        self.lingering = 0
        self.refused = 0
        self._refusal_logged = 0.0

    def __call__(self) -> asyncio.BaseProtocol:  # type: ignore[override]
        if self.open >= self.limits.max_connections > 0:
            self._note_refusal()
            return _Refusal(self)
        self.open += 1
        return EdgeProtocol(self, self.limits, loop=self._loop, **self._kwargs)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.open -= 1
        super().connection_lost(handler, exc)

    def _note_refusal(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= _REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            log.warning("connection limit reached, refusing new connections",
                        extra={"max_connections": self.limits.max_connections,
                               "refused": self.refused})


# Descriptors a process needs beside its client connections (database and S3 pools, files).
_SPARE_FILES = 256


def ensure_file_limit(max_connections: int) -> None:
    """Raise the soft limit on open files so ``max_connections`` fit (a common soft limit is
    1024); past the hard limit, say so: accepting would then fail before the cap is reached."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    needed = max_connections + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log.warning("open-file limit below GATEWAY_MAX_CONNECTIONS; raise it (LimitNOFILE)",
                        extra={"limit": target, "max_connections": max_connections})


class EdgeRunner(web.AppRunner):
    """``web.AppRunner`` serving the application through EdgeServer."""

    def __init__(self, app: web.Application, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        return EdgeServer(await super()._make_server(), self._limits)
