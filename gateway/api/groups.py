"""``/groups``: nested groups. Creating a top-level group needs an administrator or a user
allowed to create groups; a subgroup needs Maintainer on its parent; changes need Owner."""

from __future__ import annotations

from aiohttp import web

from gateway import accounts, auth, keys
from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import as_bool, as_choice, as_int, as_str, read_params
from gateway.errors import Forbidden, InvalidParameters, NotFound, json_response


async def create_group(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    missing = [f"{n} is missing" for n in ("name", "path") if not as_str(params, n)]
    if missing:
        raise InvalidParameters(missing)
    visibility = as_choice(params, "visibility", accounts.VISIBILITIES) or "private"
    parent_id = as_int(params, "parent_id")
    parent = None
    if parent_id is not None:
        access = await caller.group(request, who, str(parent_id))
        caller.require_level(who, access.level, auth.MAINTAINER)
        parent = access.group
    else:
        async with request.app[keys.db].connection() as conn:
            user = await accounts.user_by_id(conn, who.user_id)
        if not (who.is_admin or user["can_create_group"]):
            raise Forbidden()
    async with request.app[keys.db].connection() as conn:
        row = await accounts.create_group(
            conn, name=as_str(params, "name"), path=as_str(params, "path"),
            visibility=visibility, description=as_str(params, "description") or "",
            parent=parent, owner_id=who.user_id,
        )
    return json_response(entities.group(row, caller.web_base(request)), 201)


async def list_groups(request: web.Request) -> web.Response:
    return await _list(request, parent_id=None)


async def list_subgroups(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    access = await caller.group(request, who)
    return await _list(request, parent_id=access.group_id, who=who)


async def _list(request: web.Request, *, parent_id: int | None,
                who: auth.Principal | None = None) -> web.Response:
    who = who or await caller.caller(request)
    params = await read_params(request)
    page = page_of(request)
    async with request.app[keys.db].connection() as conn:
        rows, total = await accounts.list_groups(
            conn, who.user_id, admin=who.is_admin,
            signed_in=not who.anonymous and not who.external,
            search=as_str(params, "search"), owned=bool(as_bool(params, "owned")),
            min_access_level=as_int(params, "min_access_level"),
            top_level_only=bool(as_bool(params, "top_level_only")), parent_id=parent_id,
            order_by=as_choice(params, "order_by", ("name", "path", "id", "similarity"))
            or "name",
            sort=as_choice(params, "sort", ("asc", "desc")) or "asc",
            limit=page.limit, offset=page.offset,
        )
    base = caller.web_base(request)
    return caller.page_response(request, page, [entities.group(r, base) for r in rows], total)


async def get_group(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    access = await caller.group(request, who)
    return json_response(entities.group(access.group, caller.web_base(request)))


async def update_group(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    access = await caller.group(request, who)
    if not access.admin_group:
        raise Forbidden()
    params = await read_params(request)
    fields = {n: v for n in ("name", "path", "description") if (v := as_str(params, n))
              is not None}
    if (visibility := as_choice(params, "visibility", accounts.VISIBILITIES)) is not None:
        fields["visibility"] = visibility
    async with request.app[keys.db].connection() as conn:
        await accounts.update_group(conn, access.group, fields)
    access = await caller.group(request, who, str(access.group_id))
    return json_response(entities.group(access.group, caller.web_base(request)))


async def delete_group(request: web.Request) -> web.Response:
    """GitLab schedules the deletion and answers 202; here it is immediate. Files of the
    group's packages are queued for removal from the bucket by the database."""
    who = await caller.signed_in(request)
    access = await caller.group(request, who)
    if not access.admin_group:
        raise Forbidden()
    async with request.app[keys.db].connection() as conn:
        if await accounts.namespace_by_id(conn, access.group_id) is None:
            raise NotFound("Group")
        await accounts.delete_namespace(conn, access.group_id)
    request.app[keys.authenticator].forget_cached()
    return json_response({"message": "202 Accepted"}, 202)
