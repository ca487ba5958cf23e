"""Pages from Jinja2 templates (autoescaped), the UI's error pages and its security headers."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from gateway.errors import GatewayError, InsufficientScope, InvalidToken
from gateway.ui import session

log = logging.getLogger("gateway.ui")

STATIC = Path(__file__).with_name("static")
templates = web.AppKey("ui_templates", jinja2.Environment)

# No inline script or style, nothing from elsewhere, no framing: an injected tag does nothing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.ui", "templates"),
        autoescape=True,  # every template is HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = human_size
    env.filters["when"] = when
    return env


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def when(ts: dt.datetime | None) -> str:
    if ts is None:
        return "never"
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """A rendered page; never cached (it shows what this caller may see)."""
    env = request.app[templates]
    html = env.get_template(template).render(
        ui=session.view(request),
        static=lambda name: str(request.app.router["static"].url_for(filename=name)),
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


_TITLES = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found",
           409: "Conflict", 413: "Too large", 503: "Unavailable"}


def error_page(request: web.Request, status: int, detail: str) -> web.Response:
    title = _TITLES.get(status, "Something went wrong")
    return page(request, "error.html", status, title=title, detail=detail, code=status)


# The same words for a project that is missing and one you may not see.
_NOTHING_HERE = "There is nothing here, or you are not allowed to see it."


def _detail(err: GatewayError) -> str:
    if isinstance(err, InsufficientScope):
        return "Your token has only read access (read_api); this needs a token with api scope."
    if isinstance(err, InvalidToken):
        return "Your token is no longer valid."
    if err.status == 404:
        return _NOTHING_HERE
    if err.status == 403:
        return "You are not allowed to do that here."
    return err.message


@web.middleware
async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """GitLab-style JSON errors are for the API; the UI answers the same statuses as pages."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects
            exc.headers.update(SECURITY_HEADERS)
            raise
        detail = _NOTHING_HERE if exc.status == 404 else exc.reason
        response = error_page(request, exc.status, detail)
    except GatewayError as err:
        response = error_page(request, err.status, _detail(err))
        if "Retry-After" in err.headers:
            response.headers["Retry-After"] = err.headers["Retry-After"]
    response.headers.update(SECURITY_HEADERS)
    return response
