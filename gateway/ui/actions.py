"""The forms: sign-in, sign-out, and deleting a package or a file (with a confirmation).

Every POST checks its CSRF token first, then who is asking, then what the API would check.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from gateway import auth, keys
from gateway.errors import Forbidden, GatewayError, InsufficientScope, PayloadTooLarge
from gateway.governance.protection import Actor
from gateway.identity import sessions
from gateway.models import Package, PackageFile
from gateway.packages import deletion, listing
from gateway.ui import pages, render, session

# GitLab's tokens are about 26 characters; anything far longer is no token.
_MAX_TOKEN = 255
_MAX_FORM = 16 * 1024


def _next_page(value: str | None) -> str:
    """Only a page of the UI (no other host, no scheme-relative ``//host``)."""
    if value and value.startswith("/-/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/-/ui/"


async def _form(request: web.Request) -> dict[str, str]:
    # A form here is a few hundred bytes: a large body is refused before it is read.
    if request.content_length is None or request.content_length > _MAX_FORM:
        raise PayloadTooLarge()
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _sign_in_page(request: web.Request, status: int = 200, error: str = "",
                  next_page: str = "") -> web.Response:
    return render.page(
        request, "sign_in.html", status, error=error, csrf=session.sign_in_csrf(request),
        next=_next_page(next_page or request.query.get("next")),
        ended=request.query.get("ended") == "1",
    )


async def sign_in_form(request: web.Request) -> web.Response:
    if session.view(request).signed_in:
        raise web.HTTPSeeOther(_next_page(request.query.get("next")))
    return _sign_in_page(request)


async def sign_in(request: web.Request) -> web.Response:
    form = await _form(request)
    session.check_csrf(request, form, before_sign_in=True)
    token = form.get("token", "").strip()
    next_page = form.get("next", "")
    if not token or len(token) > _MAX_TOKEN:
        return _sign_in_page(request, 401, "Enter a personal access token.", next_page)
    authenticator = request.config_dict[keys.authenticator]
    try:
        # Checked as the API checks a token (GET: read_api suffices to browse).
        who = await authenticator.authenticate_api(auth.Credentials(private_token=token),
                                                   "GET")
    except InsufficientScope:
        return _sign_in_page(request, 403, "This token may not use the API: it needs the "
                             "api or read_api scope.", next_page)
    except GatewayError:
        who = auth.ANONYMOUS
    if who.kind != "user":
        return _sign_in_page(request, 401, "That is not a valid personal access token (it may "
                             "be mistyped, expired or revoked).", next_page)
    settings = request.config_dict[keys.settings]
    session_id = await sessions.start(request.config_dict[keys.db], who,
                                      settings.ui_session_hours)
    response = web.HTTPSeeOther(_next_page(next_page))
    session.set_session(response, session_id)
    raise response


async def sign_out(request: web.Request) -> web.Response:
    form = await _form(request)
    visitor = session.view(request)
    if visitor.signed_in:
        session.check_csrf(request, form)
        await sessions.end(request.config_dict[keys.db], visitor.session_id or "")
    response = web.HTTPSeeOther("/-/ui/")
    session.clear_session(response)
    raise response


def _package_path(project_id: int, package_id: int) -> str:
    return f"/-/ui/projects/{project_id}/packages/{package_id}"


async def _deletable(
    request: web.Request,
) -> tuple[int, Package, PackageFile | None, Actor]:
    """The package (and file) to delete, found as the API's DELETE finds them, and who asks
    (for the protection rules and the audit event)."""
    who = session.writer(request)
    access = await pages.packages_access(request, destroy=True, who=who)
    actor = Actor.of(who, access)
    db = request.config_dict[keys.db]
    package_id = pages.path_id(request, "package_id")
    if "file_id" in request.match_info:
        pkg, file = await listing.package_file(db, access.project_id, package_id,
                                               pages.path_id(request, "file_id"))
        return access.project_id, pkg, file, actor
    pkg = await listing.displayable_package(db, access.project_id, package_id)
    return access.project_id, pkg, None, actor


async def _confirm(request: web.Request) -> web.Response:
    if not session.view(request).signed_in:
        raise web.HTTPSeeOther(session.SIGN_IN + "?" + urlencode({"next": request.path}))
    project_id, pkg, file, _ = await _deletable(request)
    return render.page(request, "confirm.html", package=pkg, file=file,
                       cancel=_package_path(project_id, pkg.id))


confirm_package_delete = _confirm
confirm_file_delete = _confirm


async def delete_package(request: web.Request) -> web.Response:
    session.check_csrf(request, await _form(request))
    project_id, pkg, _, actor = await _deletable(request)
    await deletion.delete_package(request.config_dict[keys.db], actor, project_id, pkg.id)
    request.config_dict[keys.deletions].wake()
    raise web.HTTPSeeOther(f"/-/ui/projects/{project_id}/packages?deleted=1")


async def delete_file(request: web.Request) -> web.Response:
    session.check_csrf(request, await _form(request))
    project_id, pkg, file, actor = await _deletable(request)
    if file is None:
        raise Forbidden()
    await deletion.delete_package_file(request.config_dict[keys.db], actor, project_id,
                                       pkg.id, file.id)
    request.config_dict[keys.deletions].wake()
    raise web.HTTPSeeOther(_package_path(project_id, pkg.id) + "?deleted=1")
