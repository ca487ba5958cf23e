"""``/projects/:id/members`` and ``/groups/:id/members``: direct members, and with ``/all``
the inherited ones too (a group's members are members of everything below it, the highest
level winning). Project members are managed by Maintainers, group members by Owners."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import accounts, auth, keys
from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import as_int, as_str, path_int, read_params
from gateway.errors import (
    Conflict,
    InvalidParameters,
    NotFound,
    RecordNotFound,
    ValidationFailed,
    json_response,
)


class _Source:
    """The project or group a members route names, as the caller sees it."""

    def __init__(self, kind: str, source_id: int, level: int, ancestors: list[int],
                 manage_level: int) -> None:
        self.kind = kind
        self.id = source_id
        self.level = level
        self.ancestors = ancestors
        self.manage_level = manage_level


async def _source(request: web.Request, who: auth.Principal) -> _Source:
    if request.match_info["source"] == "projects":
        access = await caller.project(request, who)
        return _Source("project", access.project_id, access.level,
                       list(access.project["ancestor_ids"]), auth.MAINTAINER)
    group = await caller.group(request, who)
    return _Source("group", group.group_id, group.level, list(group.group["ancestor_ids"]),
                   auth.OWNER)


async def _members(request: web.Request, source: _Source, *, inherited: bool,
                   user_id: int | None = None, query: str | None = None,
                   limit: int = 10_000, offset: int = 0) -> tuple[list[Any], int]:
    async with request.app[keys.db].connection() as conn:
        return await accounts.list_members(
            conn, source.kind, source.id,
            inherited_from=source.ancestors if inherited else None,
            user_id=user_id, query=query, limit=limit, offset=offset,
        )


def _inherited(request: web.Request) -> bool:
    return request.match_info.get("all") == "all"


async def list_members(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    source = await _source(request, who)
    params = await read_params(request)
    page = page_of(request)
    rows, total = await _members(request, source, inherited=_inherited(request),
                                 query=as_str(params, "query"), limit=page.limit,
                                 offset=page.offset)
    base = caller.web_base(request)
    return caller.page_response(request, page, [entities.member(r, base) for r in rows], total)


async def get_member(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    source = await _source(request, who)
    user_id = path_int(request, "user_id")
    rows, _ = await _members(request, source, inherited=_inherited(request), user_id=user_id)
    if not rows:
        raise RecordNotFound()
    return json_response(entities.member(rows[0], caller.web_base(request)))


def _access_level(params: dict[str, Any], who: auth.Principal, source: _Source) -> int:
    level = as_int(params, "access_level", required=True)
    minimal = (accounts.MINIMAL_ACCESS,) if source.kind == "group" else ()
    allowed = accounts.ACCESS_LEVELS + minimal
    if level not in allowed:
        raise ValidationFailed({"access_level": ["is not included in the list"]})
    # Nobody grants more than they hold (an Owner is needed to make an Owner).
    caller.require_level(who, source.level, max(level, source.manage_level))
    return level


async def add_member(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    source = await _source(request, who)
    params = await read_params(request)
    has_id, has_name = params.get("user_id") not in (None, ""), bool(params.get("username"))
    if has_id and has_name:
        raise InvalidParameters(["user_id, username are mutually exclusive"])
    if not has_id and not has_name:
        raise InvalidParameters(
            ["user_id, username are missing, at least one parameter must be provided"]
        )
    caller.require_level(who, source.level, source.manage_level)
    level = _access_level(params, who, source)
    expires_at = accounts.parse_date(params.get("expires_at"), "expires_at")
    refs = [r.strip() for r in str(params["user_id"] if has_id else params["username"])
            .split(",") if r.strip()]
    added = []
    async with request.app[keys.db].connection() as conn:
        for ref in refs:
            if has_id:
                user = await accounts.user_by_id(conn, int(ref)) if ref.isdigit() else None
            else:
                user = await accounts.find_user_by_username(conn, ref)
            if user is None:
                raise NotFound("User")
            if not await accounts.add_member(conn, source.kind, source.id, user["id"], level,
                                             expires_at, who.user_id):
                if len(refs) == 1:
                    raise Conflict("Member already exists")
                continue
            added.append(user["id"])
    if len(refs) > 1:
        return json_response({"status": "success"}, 201)
    rows, _ = await _members(request, source, inherited=False, user_id=added[0])
    return json_response(entities.member(rows[0], caller.web_base(request)), 201)


async def update_member(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    source = await _source(request, who)
    user_id = path_int(request, "user_id")
    params = await read_params(request)
    caller.require_level(who, source.level, source.manage_level)
    level = _access_level(params, who, source)
    expires_at = accounts.parse_date(params.get("expires_at"), "expires_at")
    async with request.app[keys.db].connection() as conn:
        if not await accounts.update_member(conn, source.kind, source.id, user_id, level,
                                            expires_at):
            raise RecordNotFound()
    rows, _ = await _members(request, source, inherited=False, user_id=user_id)
    return json_response(entities.member(rows[0], caller.web_base(request)))


async def remove_member(request: web.Request) -> web.Response:
    """Managers remove anyone; every member may leave by removing themself."""
    who = await caller.signed_in(request)
    source = await _source(request, who)
    user_id = path_int(request, "user_id")
    if user_id != who.user_id:
        caller.require_level(who, source.level, source.manage_level)
    async with request.app[keys.db].connection() as conn:
        if not await accounts.remove_member(conn, source.kind, source.id, user_id):
            raise RecordNotFound()
    return web.Response(status=204)
