"""``/projects``: projects in a group or in a user's personal namespace, with the package
registry switched on or off (``packages_enabled`` / ``package_registry_access_level``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import accounts, auth, keys
from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import as_bool, as_choice, as_int, as_str, read_params
from gateway.errors import Forbidden, InvalidParameters, ValidationFailed, json_response

_NAMESPACE_INVALID = {"namespace": ["is not valid"]}


def _registry_params(params: dict[str, Any], fields: dict[str, Any]) -> None:
    if (enabled := as_bool(params, "packages_enabled")) is not None:
        fields["packages_enabled"] = enabled
    level = as_choice(params, "package_registry_access_level", accounts.REGISTRY_LEVELS)
    if level is not None:
        fields["package_registry_access_level"] = level


async def _target_namespace(request: web.Request, who: auth.Principal,
                            params: dict[str, Any]) -> int:
    """The namespace a new project goes to: ``namespace_id``, else the caller's own. GitLab
    answers 400 "namespace is not valid" when it is missing or the caller may not create
    projects there (Developer+ of a group, the owner of a personal namespace, administrators)."""
    namespace_id = as_int(params, "namespace_id")
    async with request.app[keys.db].connection() as conn:
        if namespace_id is None:
            return (await accounts.user_namespace(conn, who.user_id))["id"]
        namespace = await accounts.namespace_by_id(conn, namespace_id)
    if namespace is None:
        raise ValidationFailed(_NAMESPACE_INVALID)
    if namespace["kind"] == "user":
        if not (who.is_admin or namespace["owner_id"] == who.user_id):
            raise ValidationFailed(_NAMESPACE_INVALID)
        return namespace_id
    access = await auth.group_access(request.app[keys.db], who, str(namespace_id))
    if access is None or not (who.is_admin or access.level >= auth.DEVELOPER):
        raise ValidationFailed(_NAMESPACE_INVALID)
    return namespace_id


async def _render(request: web.Request, who: auth.Principal, project_id: int) -> dict[str, Any]:
    access = await caller.project(request, who, str(project_id))
    return entities.project(access.project, caller.web_base(request), caller.api_base(request))


async def create_project(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    name, path = as_str(params, "name"), as_str(params, "path")
    if not name and not path:
        raise InvalidParameters(
            ["name, path are missing, at least one parameter must be provided"]
        )
    visibility = as_choice(params, "visibility", accounts.VISIBILITIES) or "private"
    fields: dict[str, Any] = {
        "name": name or path,
        "path": path or accounts.path_from_name(name or ""),
        "description": as_str(params, "description") or "",
        "visibility": visibility,
    }
    _registry_params(params, fields)
    accounts.registry_fields(fields, visibility)
    namespace_id = await _target_namespace(request, who, params)
    async with request.app[keys.db].connection() as conn:
        row = await accounts.create_project(conn, namespace_id, fields, who.user_id)
    return json_response(await _render(request, who, row["id"]), 201)


async def list_projects(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    return await _list(request, who, None)


async def list_group_projects(request: web.Request) -> web.Response:
    """``GET /groups/:id/projects`` (with ``include_subgroups``)."""
    who = await caller.caller(request)
    access = await caller.group(request, who)
    params = await read_params(request)
    async with request.app[keys.db].connection() as conn:
        ids = [access.group_id]
        if as_bool(params, "include_subgroups"):
            ids = await accounts.group_and_descendant_ids(conn, access.group_id)
    return await _list(request, who, ids)


async def _list(request: web.Request, who: auth.Principal,
                namespace_ids: list[int] | None) -> web.Response:
    params = await read_params(request)
    page = page_of(request)
    async with request.app[keys.db].connection() as conn:
        rows, total = await accounts.list_projects(
            conn, who.user_id, admin=who.is_admin,
            signed_in=not who.anonymous and not who.external,
            search=as_str(params, "search"), owned=bool(as_bool(params, "owned")),
            membership=bool(as_bool(params, "membership")),
            visibility=as_choice(params, "visibility", accounts.VISIBILITIES),
            min_access_level=as_int(params, "min_access_level"), namespace_ids=namespace_ids,
            order_by=as_str(params, "order_by") or "created_at",
            sort=as_choice(params, "sort", ("asc", "desc")) or "desc",
            limit=page.limit, offset=page.offset,
        )
    base, api = caller.web_base(request), caller.api_base(request)
    items = [entities.project(r, base, api) for r in rows]
    return caller.page_response(request, page, items, total)


async def get_project(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    access = await caller.project(request, who)
    return json_response(
        entities.project(access.project, caller.web_base(request), caller.api_base(request))
    )


async def update_project(request: web.Request) -> web.Response:
    """Maintainer+ (``admin_project``)."""
    who = await caller.signed_in(request)
    access = await caller.project(request, who)
    caller.require_level(who, access.level, auth.MAINTAINER)
    params = await read_params(request)
    fields: dict[str, Any] = {
        n: v for n in ("name", "path", "description") if (v := as_str(params, n)) is not None
    }
    if (visibility := as_choice(params, "visibility", accounts.VISIBILITIES)) is not None:
        fields["visibility"] = visibility
    _registry_params(params, fields)
    accounts.registry_fields(fields, fields.get("visibility", access.project["visibility"]))
    async with request.app[keys.db].connection() as conn:
        await accounts.update_project(conn, access.project, fields)
    return json_response(await _render(request, who, access.project_id))


async def delete_project(request: web.Request) -> web.Response:
    """Owner or administrator (``remove_project``); 202 as GitLab, though immediate here.
    The files of its packages are queued for removal from the bucket by the database."""
    who = await caller.signed_in(request)
    access = await caller.project(request, who)
    if not (who.is_admin or access.level >= auth.OWNER):
        raise Forbidden()
    async with request.app[keys.db].connection() as conn:
        await accounts.delete_project(conn, access.project_id)
    request.app[keys.authenticator].forget_cached()
    return json_response({"message": "202 Accepted"}, 202)
