"""The whole URL table, with the access each route needs beside it."""

from __future__ import annotations

from aiohttp import web

from gateway.api import generic_packages, health, package_settings, project_packages
from gateway.errors import GatewayError

_GENERIC = "/api/v4/projects/{id}/packages/generic/{tail:.+}"
_PACKAGES = "/api/v4/projects/{id}/packages"


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
    # Delete by path (a file, or a whole version): destroy_package, as the Packages API.
    r.add_route("DELETE", _GENERIC, generic_packages.delete_by_path)
    # Packages API: reads need read_package, deletes destroy_package (Maintainer+).
    r.add_get(_PACKAGES, project_packages.list_project_packages)
    r.add_get(_PACKAGES + "/{package_id}", project_packages.get_package)
    r.add_delete(_PACKAGES + "/{package_id}", project_packages.delete_package)
    r.add_get(_PACKAGES + "/{package_id}/package_files", project_packages.list_package_files)
    r.add_delete(_PACKAGES + "/{package_id}/package_files/{package_file_id}",
                 project_packages.delete_package_file)
    r.add_get("/api/v4/groups/{id}/packages", project_packages.list_group_packages)
    # A group's duplicate policy: administrator or the group's Maintainer+.
    r.add_get("/api/v4/groups/{id}/packages/settings", package_settings.get_settings)
    r.add_put("/api/v4/groups/{id}/packages/settings", package_settings.put_settings)
    r.add_route("*", "/api/v3/{tail:.*}", api_v3)
    # Operations (no authentication).
    r.add_get("/-/health", health.live)
    r.add_get("/-/readiness", health.ready)
