"""``/projects/:id/members`` and ``/groups/:id/members`` (``/all`` with the inherited ones):
parse, call ``gateway.identity.members``, present."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import as_date, as_int, as_int_list, as_str, path_int, read_params
from gateway.errors import InvalidParameters, NotFound, RecordNotFound, json_response
from gateway.identity import members


def _kind(request: web.Request) -> str:
    return "project" if request.match_info["source"] == "projects" else "group"


def _inherited(request: web.Request) -> bool:
    return request.match_info.get("all") == "all"


def _user_id(request: web.Request) -> int:
    return path_int(request, "user_id", missing=RecordNotFound())


async def list_members(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    params = await read_params(request)
    page = page_of(request)
    found = await members.list_members(
        caller.services(request), who, _kind(request), request.match_info["id"],
        inherited=_inherited(request), query=as_str(params, "query"), limit=page.limit,
        offset=page.offset)
    base = caller.web_base(request)
    return caller.page_response(request, page, [entities.member(r, base) for r in found.items],
                                found.total)


async def get_member(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    row = await members.get_member(caller.services(request), who, _kind(request),
                                   request.match_info["id"], _user_id(request),
                                   inherited=_inherited(request))
    return json_response(entities.member(row, caller.web_base(request)))


def _user_refs(params: dict[str, Any]) -> list[int | str]:
    has_id, has_name = params.get("user_id") not in (None, ""), bool(params.get("username"))
    if has_id and has_name:
        raise InvalidParameters(["user_id, username are mutually exclusive"])
    if not has_id and not has_name:
        raise InvalidParameters(
            ["user_id, username are missing, at least one parameter must be provided"]
        )
    if has_id:
        # Grape takes ``user_id`` as Integer or String and looks it up: anything that is not
        # an id (``abc``, ``²``, past int64) finds no user.
        try:
            return list(as_int_list(params, "user_id", out_of_range=NotFound("User")))
        except InvalidParameters:
            raise NotFound("User") from None
    return [r.strip() for r in str(params["username"]).split(",") if r.strip()]


async def add_member(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    refs = _user_refs(params)
    row = await members.add_members(
        caller.services(request), who, _kind(request), request.match_info["id"],
        user_refs=refs, access_level=as_int(params, "access_level", required=True) or 0,
        expires_at=as_date(params, "expires_at"),
    )
    if row is None:
        return json_response({"status": "success"}, 201)
    return json_response(entities.member(row, caller.web_base(request)), 201)


async def update_member(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    user_id = _user_id(request)
    params = await read_params(request)
    row = await members.update_member(
        caller.services(request), who, _kind(request), request.match_info["id"], user_id,
        access_level=as_int(params, "access_level", required=True) or 0,
        expires_at=as_date(params, "expires_at"),
    )
    return json_response(entities.member(row, caller.web_base(request)))


async def remove_member(request: web.Request) -> web.Response:
    """Managers remove others; every member may leave by removing themself."""
    who = await caller.signed_in(request)
    await members.remove_member(caller.services(request), who, _kind(request),
                                request.match_info["id"], _user_id(request))
    return web.Response(status=204)
