"""The whole URL table, with the access each route needs beside it."""

from __future__ import annotations

from aiohttp import web

from gateway.api import generic_packages, health
from gateway.errors import GatewayError

_GENERIC = "/api/v4/projects/{id}/packages/generic/{tail:.+}"


class ApiV3Gone(GatewayError):
    status = 410
    key = "error"

    def __init__(self) -> None:
        super().__init__("API V3 is no longer supported. Use API V4 instead.")


async def api_v3(request: web.Request) -> web.Response:
    raise ApiV3Gone()


def setup_routes(app: web.Application) -> None:
    r = app.router
    # Generic packages: write = Developer+ or a write deploy token; read = read_package.
    r.add_route("PUT", _GENERIC, generic_packages.put_file,
                expect_handler=generic_packages.expect_nothing_yet)
    r.add_route("GET", _GENERIC, generic_packages.get_file)
    r.add_route("HEAD", _GENERIC, generic_packages.head_file)
    r.add_route("*", "/api/v3/{tail:.*}", api_v3)
    # Operations (no authentication).
    r.add_get("/-/health", health.live)
    r.add_get("/-/readiness", health.ready)
