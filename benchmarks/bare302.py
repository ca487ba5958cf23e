"""A bare aiohttp app that answers every GET with the gateway's redirect: the same status and
headers (a Location of the same length), no authentication, no database, no signing. What
aiohttp and uvloop cost per request on this machine: the ceiling the gateway's redirects are
compared with. ``python -m benchmarks.bare302 PORT WORKERS``: that many processes share the
port (SO_REUSEPORT), as ``gateway serve --workers``."""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web

_HEADERS = {
    "Location": "http://127.0.0.1:9/bench/" + "k" * 36 + "?" + "X-Amz-Signature=" + "0" * 600,
    "X-Checksum-SHA256": "0" * 64,
    "Cache-Control": "no-store",
    "Content-Type": "application/json",
}


async def redirect(request: web.Request) -> web.Response:
    return web.Response(status=302, headers=_HEADERS)


def serve(port: int, reuse_port: bool) -> None:
    import uvloop

    app = web.Application()
    app.router.add_get("/{tail:.*}", redirect)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=reuse_port, access_log=None,
                print=None)


def main() -> int:
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    children = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            serve(port, True)
            os._exit(0)
        children.append(pid)
    try:
        serve(port, workers > 1)
    finally:
        for pid in children:
            try:
                os.kill(pid, 15)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
