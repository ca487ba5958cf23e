"""``gateway serve`` with one more route that blocks its event loop, for the loop-watch tests.

``POST /-/test/block-loop?seconds=N`` sleeps N seconds *on the loop*, as a call that never
yields would. It exists only in this test program, never in the gateway.
"""

from __future__ import annotations

import sys
import time

from aiohttp import web

import gateway.server
from gateway import cli

_create_app = gateway.server.create_app


def create_app(settings, *, store=None) -> web.Application:
    app = _create_app(settings, store=store)

    async def block_loop(request: web.Request) -> web.Response:
        seconds = float(request.query["seconds"])
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
        return web.json_response({"blocked_s": seconds})

    app.router.add_post("/-/test/block-loop", block_loop)
    return app


if __name__ == "__main__":
    gateway.server.create_app = create_app
    sys.exit(cli.main(["serve"]))
