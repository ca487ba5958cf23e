"""Tokens: personal access tokens, project and group access tokens (bot users), deploy tokens,
and CI job tokens. A token's plaintext is in the create (and rotate) answer only."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway import accounts, auth, keys
from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import as_bool, as_choice, as_int, as_str, path_int, read_params
from gateway.api.present import iso
from gateway.errors import (
    BadRequest,
    Forbidden,
    InvalidParameters,
    NotFound,
    RecordNotFound,
    Unauthorized,
    json_response,
)


def _forget(request: web.Request) -> None:
    """This process honours a revocation at once; others within their token cache's seconds."""
    request.app[keys.authenticator].forget_cached()


def _name_and_scopes(params: dict[str, Any], allowed: frozenset[str]) -> tuple[str, list[str]]:
    missing = [f"{n} is missing" for n in ("name", "scopes") if params.get(n) in (None, "", [])]
    if missing:
        raise InvalidParameters(missing)
    return str(params["name"]), accounts.check_scopes(params["scopes"], allowed)


# --- personal access tokens ---------------------------------------------------------------


async def create_personal_access_token(request: web.Request) -> web.Response:
    """``POST /users/:user_id/personal_access_tokens``: administrators only."""
    await caller.administrator(request)
    user_id = path_int(request, "user_id")
    params = await read_params(request)
    name, scopes = _name_and_scopes(params, accounts.PAT_SCOPES)
    expires_at = accounts.parse_date(params.get("expires_at"), "expires_at")
    async with request.app[keys.db].connection() as conn:
        if await accounts.user_by_id(conn, user_id) is None:
            raise NotFound("User")
        token, row = await accounts.create_personal_access_token(
            conn, user_id, name, scopes, expires_at or accounts.default_expiry(),
            as_str(params, "description"),
        )
        row = await accounts.pat_by_id(conn, row["id"])
    return json_response(entities.personal_access_token(row, token), 201)


async def list_personal_access_tokens(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    user_id = as_int(params, "user_id")
    page = page_of(request)
    async with request.app[keys.db].connection() as conn:
        if who.is_admin:
            if user_id is not None and await accounts.user_by_id(conn, user_id) is None:
                raise NotFound("User")
        elif user_id is not None and user_id != who.user_id:
            raise Unauthorized(challenge=None)
        else:
            user_id = who.user_id
        rows, total = await accounts.list_pats(
            conn, user_id=user_id, revoked=as_bool(params, "revoked"),
            state=as_choice(params, "state", ("active", "inactive")),
            search=as_str(params, "search"), limit=page.limit, offset=page.offset,
        )
    items = [entities.personal_access_token(r) for r in rows]
    return caller.page_response(request, page, items, total)


async def _own_token(request: web.Request, who: auth.Principal, *, missing: Exception) -> Any:
    """The token named by ``:token_id`` (or ``self``) if the caller may manage it. GitLab
    answers 401 to non-administrators for foreign and missing tokens alike."""
    raw = request.match_info["token_id"]
    token_id = who.token_id if raw == "self" else path_int(request, "token_id")
    async with request.app[keys.db].connection() as conn:
        row = await accounts.pat_by_id(conn, token_id)
    if row is None or not (who.is_admin or row["user_id"] == who.user_id):
        if who.is_admin:
            raise missing
        raise Unauthorized(challenge=None)
    return row


async def get_personal_access_token(request: web.Request) -> web.Response:
    self_route = request.match_info["token_id"] == "self"
    who = await caller.signed_in(request, any_scope=self_route)
    row = await _own_token(request, who, missing=NotFound())
    return json_response({**entities.personal_access_token(row), "last_used_ips": []})


async def revoke_personal_access_token(request: web.Request) -> web.Response:
    self_route = request.match_info["token_id"] == "self"
    who = await caller.signed_in(request, any_scope=self_route)
    token_id = who.token_id if self_route else path_int(request, "token_id")
    async with request.app[keys.db].connection() as conn:
        row = await accounts.pat_by_id(conn, token_id)
        if row is None:
            raise RecordNotFound()
        if not (who.is_admin or row["user_id"] == who.user_id):
            raise BadRequest()
        await accounts.revoke_personal_access_token(conn, token_id)
    _forget(request)
    return web.Response(status=204)


async def _rotate(request: web.Request, row: Any) -> tuple[str, Any]:
    """A new token in place of ``row`` (revoked now); its plaintext and its stored row."""
    params = await read_params(request)
    expires_at = accounts.parse_date(params.get("expires_at"), "expires_at")
    async with request.app[keys.db].connection() as conn:
        token, new = await accounts.rotate_personal_access_token(conn, row, expires_at)
        new = await accounts.pat_by_id(conn, new["id"])
    _forget(request)
    return token, new


async def rotate_personal_access_token(request: web.Request) -> web.Response:
    self_route = request.match_info["token_id"] == "self"
    who = await caller.signed_in(request, any_scope=self_route)
    if self_route and not {"api", "self_rotate"} & who.scopes:
        raise Forbidden()
    row = await _own_token(request, who, missing=NotFound())
    token, new = await _rotate(request, row)
    return json_response(entities.personal_access_token(new, token))


# --- project and group access tokens ------------------------------------------------------


async def _resource(request: web.Request, who: auth.Principal) -> tuple[str, int, int]:
    """(kind, id, caller's level) of the project or group; managing its tokens needs
    Maintainer on a project, Owner on a group."""
    if request.match_info["source"] == "projects":
        access = await caller.project(request, who)
        caller.require_level(who, access.level, auth.MAINTAINER)
        return "project", access.project_id, access.level
    group = await caller.group(request, who)
    caller.require_level(who, group.level, auth.OWNER)
    return "group", group.group_id, group.level


def _resource_token_missing(kind: str, token_id: object) -> NotFound:
    return NotFound(f"Could not find {kind} access token with token_id: {token_id}")


async def _resource_token(request: web.Request, who: auth.Principal, kind: str,
                          source_id: int) -> Any:
    raw = request.match_info["token_id"]
    token_id = who.token_id if raw == "self" else path_int(request, "token_id")
    async with request.app[keys.db].connection() as conn:
        row = await accounts.pat_by_id(conn, token_id)
    owner = "bot_project_id" if kind == "project" else "bot_group_id"
    if row is None or row[owner] != source_id:
        raise _resource_token_missing(kind, raw)
    return row


async def list_resource_tokens(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    kind, source_id, _ = await _resource(request, who)
    params = await read_params(request)
    page = page_of(request)
    owner = {"bot_project_id": source_id} if kind == "project" else {"bot_group_id": source_id}
    async with request.app[keys.db].connection() as conn:
        rows, total = await accounts.list_pats(
            conn, state=as_choice(params, "state", ("active", "inactive")),
            limit=page.limit, offset=page.offset, **owner,
        )
    items = [entities.resource_access_token(r, kind, source_id) for r in rows]
    return caller.page_response(request, page, items, total)


async def get_resource_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    kind, source_id, _ = await _resource(request, who)
    row = await _resource_token(request, who, kind, source_id)
    return json_response(entities.resource_access_token(row, kind, source_id))


async def create_resource_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    kind, source_id, level = await _resource(request, who)
    params = await read_params(request)
    name, scopes = _name_and_scopes(params, accounts.RESOURCE_TOKEN_SCOPES)
    access_level = as_int(params, "access_level")
    access_level = auth.MAINTAINER if access_level is None else access_level
    if access_level not in (10, 15, 20, 30, 40, 50):
        raise InvalidParameters(["access_level does not have a valid value"])
    if not who.is_admin and access_level > level:
        raise BadRequest("Access level of the token can't be greater the access level of the "
                         "user who created the token")
    expires_at = accounts.parse_date(params.get("expires_at"), "expires_at")
    host = urlsplit(caller.web_base(request)).hostname or "localhost"
    async with request.app[keys.db].connection() as conn:
        token, row = await accounts.create_resource_token(
            conn, kind, source_id, name=name, scopes=scopes, access_level=access_level,
            expires_at=expires_at, description=as_str(params, "description"),
            created_by=who.user_id, host=host,
        )
        row = await accounts.pat_by_id(conn, row["id"])
    return json_response(entities.resource_access_token(row, kind, source_id, token), 201)


async def revoke_resource_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    kind, source_id, _ = await _resource(request, who)
    row = await _resource_token(request, who, kind, source_id)
    async with request.app[keys.db].connection() as conn:
        await accounts.revoke_resource_token(conn, kind, source_id, row)
    _forget(request)
    return web.Response(status=204)


async def rotate_resource_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    kind, source_id, _ = await _resource(request, who)
    row = await _resource_token(request, who, kind, source_id)
    token, new = await _rotate(request, row)
    return json_response(entities.resource_access_token(new, kind, source_id, token))


# --- deploy tokens ------------------------------------------------------------------------


async def _deploy_owner(request: web.Request, who: auth.Principal) -> dict[str, int | None]:
    """Deploy tokens of a project or group are managed by its Maintainers."""
    if request.match_info["source"] == "projects":
        access = await caller.project(request, who)
        caller.require_level(who, access.level, auth.MAINTAINER)
        return {"project_id": access.project_id, "group_id": None}
    group = await caller.group(request, who)
    caller.require_level(who, group.level, auth.MAINTAINER)
    return {"project_id": None, "group_id": group.group_id}


async def list_deploy_tokens(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    owner = await _deploy_owner(request, who)
    return await _list_deploy_tokens(request, owner)


async def list_all_deploy_tokens(request: web.Request) -> web.Response:
    """``GET /deploy_tokens``: every deploy token of the instance, for administrators."""
    await caller.administrator(request)
    return await _list_deploy_tokens(request, {"project_id": None, "group_id": None})


async def _list_deploy_tokens(request: web.Request, owner: dict[str, int | None]
                              ) -> web.Response:
    params = await read_params(request)
    page = page_of(request)
    async with request.app[keys.db].connection() as conn:
        rows, total = await accounts.list_deploy_tokens(
            conn, active=as_bool(params, "active"), limit=page.limit, offset=page.offset,
            **owner,
        )
    return caller.page_response(request, page, [entities.deploy_token(r) for r in rows], total)


async def create_deploy_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    owner = await _deploy_owner(request, who)
    params = await read_params(request)
    name, scopes = _name_and_scopes(params, accounts.DEPLOY_TOKEN_SCOPES)
    expires_at = accounts.parse_datetime(params.get("expires_at"), "expires_at")
    async with request.app[keys.db].connection() as conn:
        token, row = await accounts.create_deploy_token(
            conn, name=name, scopes=scopes, expires_at=expires_at,
            username=as_str(params, "username") or None, **owner,
        )
    return json_response(entities.deploy_token(row, token), 201)


async def get_deploy_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    owner = await _deploy_owner(request, who)
    token_id = path_int(request, "token_id")
    async with request.app[keys.db].connection() as conn:
        row = await accounts.deploy_token_in(conn, token_id, owner["project_id"],
                                             owner["group_id"])
    if row is None:
        raise RecordNotFound()
    return json_response(entities.deploy_token(row))


async def delete_deploy_token(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    owner = await _deploy_owner(request, who)
    token_id = path_int(request, "token_id")
    async with request.app[keys.db].connection() as conn:
        if not await accounts.delete_deploy_token(conn, token_id, owner["project_id"],
                                                  owner["group_id"]):
            raise RecordNotFound()
    _forget(request)
    return web.Response(status=204)


# --- CI job tokens (packgate's extension endpoint) ----------------------------------------

MAX_JOB_SECONDS = 7 * 24 * 3600


async def mint_job_token(request: web.Request) -> web.Response:
    """``POST /projects/:id/job_tokens`` ``{"user_id", "expires_in"}``: what a CI system does
    when a job starts. Administrators and the project's Maintainers may call it."""
    who = await caller.signed_in(request)
    access = await caller.project(request, who)
    caller.require_level(who, access.level, auth.MAINTAINER)
    params = await read_params(request)
    user_id = as_int(params, "user_id", required=True)
    expires_in = as_int(params, "expires_in")
    expires_in = 3600 if expires_in is None else expires_in
    if not 1 <= expires_in <= MAX_JOB_SECONDS:
        raise InvalidParameters(["expires_in does not have a valid value"])
    async with request.app[keys.db].connection() as conn:
        if await accounts.user_by_id(conn, user_id) is None:
            raise NotFound("User")
        token, row = await accounts.mint_job_token(conn, access.project_id, user_id, expires_in)
    return json_response({"token": token, "expires_at": iso(row["expires_at"])}, 201)
