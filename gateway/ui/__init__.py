"""The web UI: a server-rendered package browser under ``/-/ui/`` (``GATEWAY_UI``).

Pages call the same services as the API (``gateway.identity``, ``gateway.packages``), with a
principal found from a server-side session instead of a token header, so what a person sees,
downloads and deletes is exactly what the API allows that token. Handlers parse, call and
present; every authorization rule is the services'.
"""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.errors import NoRoute
from gateway.ui import actions, pages, render, session

PREFIX = "/-/ui"
_ID = "{id:[0-9]+}"
_PACKAGE = f"/projects/{_ID}/packages/{{package_id:[0-9]+}}"
_FILE = _PACKAGE + "/files/{file_id:[0-9]+}"


def setup(app: web.Application) -> None:
    """Mount the UI on ``app`` and redirect browsers asking for ``/`` to it."""
    ui = web.Application(middlewares=[session.middleware, render.middleware])
    ui[keys.settings] = app[keys.settings]
    ui[render.templates] = render.environment()
    r = ui.router
    r.add_get("/", pages.projects)
    r.add_get("/sign_in", actions.sign_in_form)
    r.add_post("/sign_in", actions.sign_in)
    r.add_post("/sign_out", actions.sign_out)
    r.add_get(f"/projects/{_ID}", pages.project)
    r.add_get(f"/projects/{_ID}/packages", pages.packages)
    r.add_get(_PACKAGE, pages.package)
    r.add_get(_PACKAGE + "/delete", actions.confirm_package_delete)
    r.add_post(_PACKAGE + "/delete", actions.delete_package)
    r.add_get(_FILE, pages.package_file)
    r.add_get(_FILE + "/download", pages.download)
    r.add_get(_FILE + "/delete", actions.confirm_file_delete)
    r.add_post(_FILE + "/delete", actions.delete_file)
    r.add_static("/static", render.STATIC, name="static", append_version=True)
    app.add_subapp(PREFIX, ui)
    app.router.add_get("/", root)


async def root(request: web.Request) -> web.Response:
    """``/``: browsers (who ask for HTML) go to the UI; API clients keep GitLab's 404."""
    if "text/html" in request.headers.get("Accept", ""):
        raise web.HTTPFound(PREFIX + "/")
    raise NoRoute()
