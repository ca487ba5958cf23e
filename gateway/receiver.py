"""A request body received straight into the upload's part buffers.

Through aiohttp every body byte is copied three times on the event loop: uvloop reads the
socket into a new ``bytes``, the HTTP parser copies the body out of it into another, and the
upload copies that into its part buffer. For a body with a ``Content-Length`` the handler can
instead hand the socket to a ``BodyReceiver`` (an asyncio ``BufferedProtocol``) once aiohttp has
parsed the head: the kernel then writes the body into the part buffer itself, one copy in all.

- What aiohttp had already received of the body is taken over first (``take_over``); the rest
  is read from the socket, never a byte past the body's end into a part buffer: the last
  ``TAIL`` bytes of the body are read through a scratch buffer with room for more, and whatever
  arrives with the body's end goes to aiohttp's parser at once, as it would through aiohttp (a
  pipelined request, or bytes that break the framing: a 400).
- Once the body is in, the connection is aiohttp's again, with a fresh parser: aiohttp's own
  parser counted none of the body and would take the next request for the rest of it.
- Bytes that arrive while no part buffer waits for them are held as pieces, and reading stops
  while ``HIGH_WATER`` of them wait, as aiohttp's StreamReader does: an upload waiting for room
  in the buffer budget pushes back on its client the same way.
- A connection lost wakes the reader with the error, and is aiohttp's to clean up as always.
- An upload that ends before its body (refused, timed out) leaves the receiver discarding the
  rest while aiohttp lingers; its answer closes the connection (the body is unread).

aiohttp has no public way to do this; what it reads of aiohttp's internals is listed in
``ALIASED_INTERNALS`` and checked by tests/security/test_aiohttp_contract.py.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

# The body's last bytes go through the scratch buffer, which has room beyond them; it is also
# what other reads go into (a socket read's worth, as uvloop's own buffer).
TAIL = 192 * 1024
_SCRATCH = 256 * 1024
# Pieces held unread before reading stops (and resumes): with one more read and the scratch
# buffer, a connection holds no more than aiohttp's StreamReader would (2 x 256 KiB and a read).
HIGH_WATER = 256 * 1024
_LOW_WATER = 128 * 1024

ALIASED_INTERNALS = {
    "RequestHandler": ("_parser", "_messages", "_reading_paused", "_payload_parser",
                       "_upgraded", "_read_bufsize", "_max_msg_queue_size", "_manager",
                       "_loop"),
    "web.Server": ("_kwargs",),
}


def _fresh_parser(handler: RequestHandler) -> Any:
    """A parser for the connection's next request, made as aiohttp makes the first one."""
    h: Any = handler
    kwargs = h._manager._kwargs if h._manager is not None else {}
    return type(h._parser)(
        handler, h._loop, h._read_bufsize,
        max_line_size=handler.max_line_size, max_field_size=handler.max_field_size,
        max_headers=handler.max_headers, payload_exception=RequestPayloadError,
        auto_decompress=kwargs.get("auto_decompress", True),
        max_msg_queue_size=h._max_msg_queue_size,
    )


class BodyReceiver(asyncio.BufferedProtocol):
    """The connection's protocol while the rest of one body arrives (see the module)."""

    def __init__(self, handler: RequestHandler, payload: StreamReader, remaining: int,
                 held: list[bytes]) -> None:
        self._handler = handler
        self._payload = payload
        transport = handler.transport
        assert transport is not None
        self._transport = transport
        self._remaining = remaining  # body bytes still to come from the socket
        self._pieces: collections.deque[bytes | memoryview] = collections.deque(
            p for p in held if p)
        self._piece_bytes = sum(len(p) for p in self._pieces)
        self._target: memoryview | None = None
        self._filled = 0
        self._into_target = False
        self._scratch = bytearray(_SCRATCH)
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._paused = False
        self._discarding = False
        # True once the connection is aiohttp's again (or never was this receiver's).
        self.handed_back = remaining == 0
        self.last_data = time.monotonic()
        # Told of the bytes each aimed view received (the metrics' count of body bytes).
        self.on_received: Callable[[int], None] | None = None

    @classmethod
    def take_over(cls, handler: RequestHandler, payload: StreamReader,
                  content_length: int) -> BodyReceiver | None:
        """Move the body still to come from aiohttp to a receiver, or None if the connection
        is in a state this does not handle (aiohttp then goes on reading it)."""
        h: Any = handler
        transport = handler.transport
        if (transport is None or transport.is_closing() or h._payload_parser is not None
                or h._upgraded or h._messages or payload.exception() is not None
                or payload.is_eof() or not hasattr(transport, "set_protocol")):
            return None
        held: list[bytes] = []
        while True:
            # Draining the reader lets aiohttp feed it what its parser held back while paused.
            while chunk := payload.read_nowait(-1):
                held.append(chunk)
            if payload.is_eof() or not h._reading_paused:
                break
            handler.resume_reading()
        remaining = content_length - payload.total_bytes
        if payload.is_eof() and remaining == 0 and payload.exception() is None:
            # The whole body was already here: the pieces are all of it, nothing moves.
            return cls(handler, payload, 0, held)
        receiver = cls(handler, payload, max(remaining, 1), held)
        if payload.is_eof() or payload.exception() is not None or remaining <= 0:
            # The connection broke meanwhile: the pieces, then the error (never an end).
            receiver.handed_back = True
            receiver._error = ConnectionResetError("the connection broke mid-body")
            return receiver
        transport.set_protocol(receiver)
        return receiver

    # --- what the upload calls ------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """The whole body has been handed out."""
        return self._remaining == 0 and not self._pieces

    @property
    def filled(self) -> int:
        """Bytes in the view given to ``aim`` so far."""
        return self._filled

    def aim(self, view: memoryview) -> None:
        """Receive the next bytes of the body into ``view`` (what is held goes in first)."""
        filled = 0
        while self._pieces and filled < len(view):
            piece = self._pieces.popleft()
            take = min(len(piece), len(view) - filled)
            view[filled : filled + take] = memoryview(piece)[:take]
            filled += take
            if take < len(piece):
                self._pieces.appendleft(memoryview(piece)[take:])
        self._piece_bytes -= filled
        self._target, self._filled = view, filled
        self._maybe_resume()

    def release(self) -> int:
        """Stop receiving into the view given to ``aim``; the bytes it received."""
        filled, self._target, self._filled = self._filled, None, 0
        if filled and self.on_received is not None:
            self.on_received(filled)
        return filled

    async def wait_filled(self) -> None:
        """Until the aimed view is full, the body has ended, or the connection is lost."""
        while not (self._target is None or self._filled >= len(self._target) or self.ended):
            await self._wait()

    async def readchunk(self) -> bytes | memoryview:
        """The next received piece; ``b""`` at the end of the body."""
        while not self._pieces:
            if self._remaining == 0:
                return b""
            await self._wait()
        piece = self._pieces.popleft()
        self._piece_bytes -= len(piece)
        self._maybe_resume()
        return piece

    def discard_rest(self) -> None:
        """The upload is over before its body: drop what still comes (while aiohttp lingers),
        so the client can read its answer rather than a reset."""
        self._discarding = True
        self._target = None
        self._pieces.clear()
        self._piece_bytes = 0
        self._maybe_resume()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = self._handler._loop.create_future()
        self._maybe_resume()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _maybe_resume(self) -> None:
        if self._paused and self._piece_bytes < _LOW_WATER and not self.handed_back:
            self._paused = False
            self._transport.resume_reading()

    # --- the protocol -----------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        target = self._target
        if target is not None and self._filled < len(target) and self._remaining > TAIL:
            self._into_target = True
            end = self._filled + min(len(target) - self._filled, self._remaining - TAIL)
            return target[self._filled : end]
        self._into_target = False
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        self.last_data = time.monotonic()
        if self._into_target:
            self._filled += nbytes
            self._remaining -= nbytes
            if self._target is not None and self._filled == len(self._target):
                self._wake()
            return
        body = min(nbytes, self._remaining)
        self._remaining -= body
        if not self._discarding:
            self._keep(memoryview(self._scratch)[:body])
        extra = bytes(self._scratch[body:nbytes]) if nbytes > body else b""
        if self._remaining == 0:
            self._hand_back(extra)
        elif self._piece_bytes >= HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def _keep(self, data: memoryview) -> None:
        """Body bytes read through the scratch buffer: into the aimed view, the rest held."""
        target = self._target
        if target is not None and self._filled < len(target):
            take = min(len(data), len(target) - self._filled)
            target[self._filled : self._filled + take] = data[:take]
            self._filled += take
            data = data[take:]
        if data:
            self._pieces.append(bytes(data))
            self._piece_bytes += len(data)

    def _hand_back(self, extra: bytes) -> None:
        """The body is in: the connection is aiohttp's again, its parser at the next request."""
        handler: Any = self._handler
        self.handed_back = True
        handler._parser = _fresh_parser(self._handler)
        self._transport.set_protocol(self._handler)
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        self._payload.feed_eof()
        if extra:
            self._handler.data_received(extra)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._error = ConnectionResetError(str(exc) if exc is not None else "Connection lost")
        self._wake()
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()
