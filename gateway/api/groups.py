"""``/groups``: nested groups. Parse, call ``gateway.identity.groups``, present."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import as_bool, as_choice, as_int, as_str, read_params
from gateway.enums import VISIBILITIES
from gateway.errors import InvalidParameters, NotFound, json_response
from gateway.identity import groups


async def create_group(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    missing = [f"{n} is missing" for n in ("name", "path") if not as_str(params, n)]
    if missing:
        raise InvalidParameters(missing)
    row = await groups.create(
        caller.services(request), who, name=as_str(params, "name") or "",
        path=as_str(params, "path") or "",
        visibility=as_choice(params, "visibility", VISIBILITIES) or "private",
        description=as_str(params, "description") or "",
        # A parent past int64 cannot exist: GitLab's 404 "Group Not Found".
        parent_id=as_int(params, "parent_id", out_of_range=NotFound("Group")),
    )
    return json_response(entities.group(row, caller.web_base(request)), 201)


def _filters(params: dict) -> groups.GroupFilters:
    return groups.GroupFilters(
        search=as_str(params, "search"), owned=bool(as_bool(params, "owned")),
        min_access_level=as_int(params, "min_access_level"),
        top_level_only=bool(as_bool(params, "top_level_only")),
        order_by=as_choice(params, "order_by", ("name", "path", "id", "similarity")) or "name",
        sort=as_choice(params, "sort", ("asc", "desc")) or "asc",
    )


async def _list(request: web.Request, parent_ref: str | None) -> web.Response:
    who = await caller.caller(request)
    params = await read_params(request)
    page = page_of(request)
    found = await groups.list_groups(caller.services(request), who, _filters(params),
                                     parent_ref=parent_ref, limit=page.limit, offset=page.offset)
    base = caller.web_base(request)
    return caller.page_response(request, page, [entities.group(r, base) for r in found.items],
                                found.total)


async def list_groups(request: web.Request) -> web.Response:
    return await _list(request, None)


async def list_subgroups(request: web.Request) -> web.Response:
    return await _list(request, request.match_info["id"])


async def get_group(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    row = await groups.get(caller.services(request), who, request.match_info["id"])
    return json_response(entities.group(row, caller.web_base(request)))


async def update_group(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    fields = {n: v for n in ("name", "path", "description") if (v := as_str(params, n))
              is not None}
    if (visibility := as_choice(params, "visibility", VISIBILITIES)) is not None:
        fields["visibility"] = visibility
    row = await groups.update(caller.services(request), who, request.match_info["id"], fields)
    return json_response(entities.group(row, caller.web_base(request)))


async def delete_group(request: web.Request) -> web.Response:
    """GitLab schedules the deletion and answers 202; here it is immediate."""
    who = await caller.signed_in(request)
    await groups.delete(caller.services(request), who, request.match_info["id"])
    return json_response({"message": "202 Accepted"}, 202)
