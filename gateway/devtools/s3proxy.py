"""An HTTP proxy in front of an S3 server that can be told to answer 500s: a real
``InternalError`` on the wire, as S3 sends it when a node fails.

It runs as a child process (``python -m gateway.devtools.s3proxy UPSTREAM PORT``) so faults are
switched from outside with signals, the way the other parts are stopped and frozen: SIGUSR1
starts failing a share of the requests (``--fail-ratio``, drawn from ``--seed``), SIGUSR2 stops
it. Everything else is forwarded as it came (the ``Host`` header too: it is part of a SigV4
signature), one request at a time per connection, bodies in memory (S3 parts are a few MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
from pathlib import Path

from gateway.devtools.processes import (
    ChildService,
    LocalServiceError,
    Proc,
    free_port,
    http_answers,
    port_is_free,
    spawn,
    stop_process,
    wait_until,
)

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
               "upgrade"}
# Recomputed by aiohttp for the body it sends on.
_REQUEST_ONLY = {"content-length", "content-encoding"}

S3_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class FaultyS3Proxy(ChildService):
    """The proxy as a child of ours on 127.0.0.1:``port``, forwarding to ``upstream``."""

    def __init__(self, upstream: str, log_path: Path, *, port: int | None = None,
                 fail_ratio: float = 0.5, seed: int = 0, timeout: float = 30.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.log_path = log_path
        self.port = port
        self.fail_ratio = fail_ratio
        self.seed = seed
        self.timeout = timeout
        self.failing = False
        self._proc: Proc | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise LocalServiceError("the port is chosen by start(); no endpoint before it")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.is_running():
            return
        if self.port is None:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise LocalServiceError(f"port {self.port} on 127.0.0.1 is already in use")
        self._proc = spawn([sys.executable, "-m", "gateway.devtools.s3proxy", self.upstream,
                            str(self.port), "--fail-ratio", str(self.fail_ratio),
                            "--seed", str(self.seed)], self.log_path)
        self.failing = False
        try:
            wait_until(lambda: http_answers(self.endpoint_url + "/"), "S3 proxy", self.timeout,
                       self._proc, self.log_path)
        except BaseException:
            self.stop()
            raise

    def _signal(self, sig: int) -> None:
        if not self.is_running():
            raise LocalServiceError("the S3 proxy is not running")
        assert self._proc is not None
        self._proc.send_signal(sig)

    def fail(self) -> None:
        """From now on, answer 500 to ``fail_ratio`` of the requests."""
        self._signal(signal.SIGUSR1)
        self.failing = True

    def heal(self) -> None:
        """Forward every request again."""
        self._signal(signal.SIGUSR2)
        self.failing = False

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, self.timeout)
            self._proc = None


async def _serve(upstream: str, port: int, fail_ratio: float, seed: int) -> None:
    import aiohttp
    from aiohttp import web

    rng = random.Random(seed)
    state = {"failing": False, "failed": 0, "forwarded": 0}
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: state.update(failing=True))
    loop.add_signal_handler(signal.SIGUSR2, lambda: state.update(failing=False))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    session = aiohttp.ClientSession(auto_decompress=False,
                                    connector=aiohttp.TCPConnector(limit=0))

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if state["failing"] and rng.random() < fail_ratio:
            state["failed"] += 1
            return web.Response(status=500, body=S3_ERROR, content_type="application/xml")
        skip = _HOP_BY_HOP | _REQUEST_ONLY
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers, data=body,
            allow_redirects=False, timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
        ) as answer:
            # Streamed back (a proxied download may be large), its length as S3 gave it.
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            response = web.StreamResponse(status=answer.status, headers=out)
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(1 << 20):
                await response.write(chunk)
            await response.write_eof()
            state["forwarded"] += 1
            return response

    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await stop.wait()
    finally:
        print(f"S3 proxy: {state['forwarded']} forwarded, {state['failed']} answered 500",
              flush=True)
        await runner.cleanup()
        await session.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.devtools.s3proxy")
    p.add_argument("upstream")
    p.add_argument("port", type=int)
    p.add_argument("--fail-ratio", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.upstream.rstrip("/"), args.port, args.fail_ratio, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
