"""The caller of an administration route, and the projects and groups it names.

These routes accept personal (project, group) access tokens only; deploy and job tokens belong
to the package routes. A plain 401 here carries no ``WWW-Authenticate`` (that realm is the
Packages API's), while expired and revoked tokens get the OAuth-style 401 everywhere.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import auth, keys
from gateway.api.pagination import Page, external_base, headers
from gateway.errors import Forbidden, NotFound, Unauthorized, json_response

READ_USER = frozenset({"read_user"})


async def caller(request: web.Request, *, read_scopes: frozenset[str] = frozenset(),
                 any_scope: bool = False) -> auth.Principal:
    creds = auth.Credentials.from_request(request.headers, request.query)
    return await request.app[keys.authenticator].authenticate_api(
        creds, request.method, read_scopes=read_scopes, any_scope=any_scope
    )


async def signed_in(request: web.Request, *, read_scopes: frozenset[str] = frozenset(),
                    any_scope: bool = False) -> auth.Principal:
    """The caller, who must be signed in (GitLab's ``authenticate!``)."""
    who = await caller(request, read_scopes=read_scopes, any_scope=any_scope)
    if who.anonymous:
        raise Unauthorized(challenge=None)
    return who


async def administrator(request: web.Request) -> auth.Principal:
    """``authenticated_as_admin!``: 401 anonymous, 403 for everyone but administrators."""
    who = await signed_in(request)
    if not who.is_admin:
        raise Forbidden()
    return who


async def project(request: web.Request, who: auth.Principal, ref: str | None = None
                  ) -> auth.ProjectAccess:
    """GitLab's ``find_project!``: missing or invisible is ``404 Project Not Found``."""
    settings = request.app[keys.settings]
    access = await auth.project_access(
        request.app[keys.db], who, ref if ref is not None else request.match_info["id"],
        allow_guest_pull=settings.allow_guest_pull,
    )
    if access is None or not access.read_project:
        raise NotFound("Project")
    return access


async def group(request: web.Request, who: auth.Principal, ref: str | None = None
                ) -> auth.GroupAccess:
    access = await auth.group_access(
        request.app[keys.db], who, ref if ref is not None else request.match_info["id"]
    )
    return auth.require_group_visible(who, access)


def require_level(who: auth.Principal, level: int, minimum: int) -> None:
    """Administrators may do anything; others need ``minimum`` in the project or group."""
    if not who.is_admin and level < minimum:
        raise Forbidden()


def web_base(request: web.Request) -> str:
    return external_base(request)


def api_base(request: web.Request) -> str:
    return external_base(request) + "/api/v4"


def page_response(request: web.Request, page: Page, items: list[Any], total: int
                  ) -> web.Response:
    return json_response(items, 200, headers(request, page, total))

