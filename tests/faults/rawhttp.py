"""Uploads over a raw socket, for faults a well-behaved HTTP client cannot make: hanging up
part way, lying about the length, breaking the chunked encoding, sending slowly."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass


def put_head(path: str, token: str, *, length: int | None = None, chunked: bool = False,
             extra: dict[str, str] | None = None) -> bytes:
    lines = [f"PUT {path} HTTP/1.1", "Host: 127.0.0.1", f"PRIVATE-TOKEN: {token}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Answer:
    status: int | None  # None: the connection closed without an answer
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class RawUpload:
    """One connection to ``host:port``; write bytes, then read one answer or the close."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> RawUpload:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def abort(self) -> None:
        """Hang up without a word (the client process died or lost its network)."""
        assert self._writer is not None
        self._writer.transport.abort()

    async def answer(self, timeout: float = 30.0) -> Answer:
        """Read one response (status line, headers, Content-Length body), or the close."""
        assert self._reader is not None
        async with asyncio.timeout(timeout):
            try:
                head = await self._reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return Answer(None, {}, b"")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if status == 100:
                return Answer(100, headers, b"")
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
            return Answer(status, headers, body)

    async def closed_by_peer(self, timeout: float = 30.0) -> bool:
        """True once the server has closed the connection (reads hit EOF)."""
        assert self._reader is not None
        async with asyncio.timeout(timeout):
            try:
                while await self._reader.read(65536):
                    pass
            except ConnectionError:
                pass
        return True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
