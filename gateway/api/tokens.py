"""Tokens: personal access tokens, project and group access tokens, deploy tokens and CI job
tokens. Parse, call ``gateway.identity.tokens``, present; a secret is shown by create and
rotate only."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import (
    as_bool,
    as_choice,
    as_date,
    as_datetime,
    as_int,
    as_str,
    path_id_or_self,
    path_int,
    read_params,
)
from gateway.enums import MAINTAINER, RESOURCE_TOKEN_LEVELS
from gateway.errors import InvalidParameters, NotFound, RecordNotFound, json_response
from gateway.identity import tokens


def _name_and_scopes(params: dict[str, Any], allowed: frozenset[str]) -> tuple[str, list[str]]:
    missing = [f"{n} is missing" for n in ("name", "scopes") if params.get(n) in (None, "", [])]
    if missing:
        raise InvalidParameters(missing)
    return as_str(params, "name") or "", tokens.check_scopes(params["scopes"], allowed)


def _self_route(request: web.Request) -> bool:
    return request.match_info["token_id"] == "self"


# --- personal access tokens ---------------------------------------------------------------


async def create_personal_access_token(request: web.Request) -> web.Response:
    """``POST /users/:user_id/personal_access_tokens``: administrators only."""
    who = await caller.signed_in(request)
    user_id = path_int(request, "user_id", missing=NotFound("User"))
    params = await read_params(request)
    name, scopes = _name_and_scopes(params, tokens.PAT_SCOPES)
    issued = await tokens.create_personal_access_token(
        caller.services(request), who, user_id, name=name, scopes=scopes,
        expires_at=as_date(params, "expires_at"), description=as_str(params, "description"),
    )
    return json_response(entities.personal_access_token(issued.record, issued.token), 201)


async def list_personal_access_tokens(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    page = page_of(request)
    found = await tokens.list_personal_access_tokens(
        caller.services(request), who, user_id=as_int(params, "user_id",
                                                      out_of_range=NotFound("User")),
        revoked=as_bool(params, "revoked"),
        state=as_choice(params, "state", ("active", "inactive")),
        search=as_str(params, "search"), limit=page.limit, offset=page.offset,
    )
    items = [entities.personal_access_token(r) for r in found.items]
    return caller.page_response(request, page, items, found.total)


def _token_id(request: web.Request, missing: Exception) -> int | None:
    return path_id_or_self(request, "token_id", missing=missing)  # type: ignore[arg-type]


async def get_personal_access_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request, any_scope=_self_route(request))
    # Past int64 no token exists: what GitLab answers for a missing one (401 to non-admins).
    token_id = _token_id(request, NotFound())
    row = await tokens.get_personal_access_token(caller.services(request), who, token_id)
    return json_response({**entities.personal_access_token(row), "last_used_ips": []})


async def revoke_personal_access_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request, any_scope=_self_route(request))
    token_id = _token_id(request, RecordNotFound())
    await tokens.revoke_personal_access_token(caller.services(request), who, token_id)
    return web.Response(status=204)


async def rotate_personal_access_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request, any_scope=_self_route(request))
    token_id = _token_id(request, NotFound())
    params = await read_params(request)
    issued = await tokens.rotate_personal_access_token(
        caller.services(request), who, token_id, as_date(params, "expires_at"))
    return json_response(entities.personal_access_token(issued.record, issued.token))


# --- project and group access tokens ------------------------------------------------------


def _kind(request: web.Request) -> str:
    return "project" if request.match_info["source"] == "projects" else "group"


def _resource_token_id(request: web.Request) -> tuple[int | None, str]:
    """The id (None for ``self``: the caller's token) and the raw text for the 404 body."""
    raw = request.match_info["token_id"]
    kind = _kind(request)
    missing = NotFound(f"Could not find {kind} access token with token_id: {raw}")
    return path_id_or_self(request, "token_id", missing=missing), raw


async def list_resource_tokens(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    page = page_of(request)
    kind = _kind(request)
    source_id, found = await tokens.list_resource_tokens(
        caller.services(request), who, kind, request.match_info["id"],
        state=as_choice(params, "state", ("active", "inactive")), limit=page.limit,
        offset=page.offset)
    items = [entities.resource_access_token(r, kind, source_id) for r in found.items]
    return caller.page_response(request, page, items, found.total)


async def get_resource_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    token_id, raw = _resource_token_id(request)
    kind = _kind(request)
    source_id, row = await tokens.get_resource_token(
        caller.services(request), who, kind, request.match_info["id"],
        token_id if token_id is not None else who.token_id, raw)
    return json_response(entities.resource_access_token(row, kind, source_id))


async def create_resource_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    name, scopes = _name_and_scopes(params, tokens.RESOURCE_TOKEN_SCOPES)
    access_level = as_int(params, "access_level")
    access_level = MAINTAINER if access_level is None else access_level
    if access_level not in RESOURCE_TOKEN_LEVELS:
        raise InvalidParameters(["access_level does not have a valid value"])
    kind = _kind(request)
    source_id, issued = await tokens.create_resource_token(
        caller.services(request), who, kind, request.match_info["id"], name=name,
        scopes=scopes, access_level=access_level, expires_at=as_date(params, "expires_at"),
        description=as_str(params, "description"),
        host=urlsplit(caller.web_base(request)).hostname or "localhost",
    )
    body = entities.resource_access_token(issued.record, kind, source_id, issued.token)
    return json_response(body, 201)


async def revoke_resource_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    token_id, raw = _resource_token_id(request)
    await tokens.revoke_resource_token(
        caller.services(request), who, _kind(request), request.match_info["id"],
        token_id if token_id is not None else who.token_id, raw)
    return web.Response(status=204)


async def rotate_resource_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    token_id, raw = _resource_token_id(request)
    params = await read_params(request)
    kind = _kind(request)
    source_id, issued = await tokens.rotate_resource_token(
        caller.services(request), who, kind, request.match_info["id"],
        token_id if token_id is not None else who.token_id, raw,
        as_date(params, "expires_at"))
    return json_response(
        entities.resource_access_token(issued.record, kind, source_id, issued.token))


# --- deploy tokens ------------------------------------------------------------------------


def _deploy_token_id(request: web.Request) -> int:
    return path_int(request, "token_id", missing=RecordNotFound())


async def _list_deploy_tokens(request: web.Request, kind: str | None) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    page = page_of(request)
    found = await tokens.list_deploy_tokens(
        caller.services(request), who, kind, request.match_info.get("id"),
        active=as_bool(params, "active"), limit=page.limit, offset=page.offset)
    return caller.page_response(request, page, [entities.deploy_token(r) for r in found.items],
                                found.total)


async def list_deploy_tokens(request: web.Request) -> web.Response:
    return await _list_deploy_tokens(request, _kind(request))


async def list_all_deploy_tokens(request: web.Request) -> web.Response:
    """``GET /deploy_tokens``: every deploy token of the instance, for administrators."""
    return await _list_deploy_tokens(request, None)


async def create_deploy_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    name, scopes = _name_and_scopes(params, tokens.DEPLOY_TOKEN_SCOPES)
    issued = await tokens.create_deploy_token(
        caller.services(request), who, _kind(request), request.match_info["id"], name=name,
        scopes=scopes, expires_at=as_datetime(params, "expires_at"),
        username=as_str(params, "username") or None,
    )
    return json_response(entities.deploy_token(issued.record, issued.token), 201)


async def get_deploy_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    token_id = _deploy_token_id(request)
    row = await tokens.get_deploy_token(caller.services(request), who, _kind(request),
                                        request.match_info["id"], token_id)
    return json_response(entities.deploy_token(row))


async def delete_deploy_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    token_id = _deploy_token_id(request)
    await tokens.delete_deploy_token(caller.services(request), who, _kind(request),
                                     request.match_info["id"], token_id)
    return web.Response(status=204)


# --- CI job tokens (packgate's extension endpoints) ----------------------------------------


async def mint_job_token(request: web.Request) -> web.Response:
    """``POST /projects/:id/job_tokens`` ``{"user_id", "expires_in"}``: what a CI system does
    when a job starts. Administrators and the project's Maintainers may call it."""
    who = await caller.signed_in(request)
    params = await read_params(request)
    issued = await tokens.mint_job_token(
        caller.services(request), who, request.match_info["id"],
        user_id=as_int(params, "user_id", required=True, out_of_range=NotFound("User")) or 0,
        expires_in=as_int(params, "expires_in",
                          out_of_range=InvalidParameters(["expires_in does not have a valid "
                                                          "value"])),
    )
    return json_response(entities.job_token(issued.record, issued.token), 201)


async def list_job_tokens(request: web.Request) -> web.Response:
    """``GET /projects/:id/job_tokens``: the job tokens that still work, without secrets."""
    who = await caller.signed_in(request)
    page = page_of(request)
    found = await tokens.list_job_tokens(caller.services(request), who,
                                         request.match_info["id"], limit=page.limit,
                                         offset=page.offset)
    return caller.page_response(request, page, [entities.job_token(r) for r in found.items],
                                found.total)


async def revoke_job_token(request: web.Request) -> web.Response:
    """``DELETE /projects/:id/job_tokens/:job_token_id``: the token stops working at once on
    every gateway (a CI system calls it when the job ends or is cancelled)."""
    who = await caller.signed_in(request)
    token_id = path_int(request, "job_token_id", missing=RecordNotFound())
    await tokens.revoke_job_token(caller.services(request), who, request.match_info["id"],
                                  token_id)
    return web.Response(status=204)
