"""The caller of an administration route, the services it calls, and list answers.

These routes accept personal (project, group) access tokens only; deploy and job tokens belong
to the package routes. A plain 401 here carries no ``WWW-Authenticate`` (that realm is the
Packages API's), while expired and revoked tokens get the OAuth-style 401 everywhere.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import auth, keys
from gateway.api.pagination import Page, external_base, headers
from gateway.errors import Unauthorized, json_response
from gateway.identity.context import Services

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


def services(request: web.Request) -> Services:
    return request.app[keys.services]


def web_base(request: web.Request) -> str:
    return external_base(request)


def api_base(request: web.Request) -> str:
    return external_base(request) + "/api/v4"


def page_response(request: web.Request, page: Page, items: list[Any], total: int
                  ) -> web.Response:
    return json_response(items, 200, headers(request, page, total))
