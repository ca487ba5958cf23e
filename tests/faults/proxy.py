"""An HTTP proxy between the gateway and an S3 server that injects faults: a real 500 on the
wire, answered by a real server, for every Nth UploadPart."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway.devtools.processes import free_port

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
               "content-encoding"}

_S3_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class FaultyS3Proxy:
    """Forwards every request to ``upstream``; answers 500 to every ``fail_every``-th
    UploadPart instead of forwarding it. ``async with`` starts and stops it."""

    def __init__(self, upstream: str, fail_every: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_every = fail_every
        self.upload_parts = 0
        self.failed_parts = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultyS3Proxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "PUT" and {"partNumber", "uploadId"} <= set(request.query):
            self.upload_parts += 1
            if self.upload_parts % self.fail_every == 0:
                self.failed_parts += 1
                return web.Response(status=500, body=_S3_ERROR, content_type="application/xml")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body,
            timeout=aiohttp.ClientTimeout(total=60),
        ) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=upstream.status, body=payload, headers=out)
