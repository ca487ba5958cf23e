"""A TCP proxy that passes what the gateway sends at a fixed rate: a slow but live S3."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import urlsplit

# Small receive buffers on the proxy's side, so the gateway's writes wait for the proxy
# rather than vanishing into the kernel: what it sends really moves at the proxy's rate.
_RCVBUF = 128 * 1024
_PIECE = 64 * 1024


class ThrottledProxy:
    """Forwards TCP connections to ``upstream`` (an http:// URL); bytes towards the upstream
    move at ``bytes_per_second``, answers flow back at full speed. ``async with`` runs it."""

    def __init__(self, upstream: str, bytes_per_second: float) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rate = bytes_per_second
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ThrottledProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._connection, sock=sock)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            try:
                await asyncio.gather(
                    self._pump(reader, up_writer, throttle=True),
                    self._pump(up_reader, writer, throttle=False),
                )
            finally:
                up_writer.close()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *,
                    throttle: bool) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(_PIECE):
                dst.write(data)
                await dst.drain()
                if throttle:
                    await asyncio.sleep(len(data) / self.rate)
            if dst.can_write_eof():
                dst.write_eof()
