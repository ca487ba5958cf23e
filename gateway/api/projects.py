"""``/projects``: parse, call ``gateway.identity.projects``, present."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from gateway.api import caller, entities, pagination
from gateway.api.params import as_bool, as_choice, as_int, as_str, read_params
from gateway.enums import REGISTRY_LEVELS, VISIBILITIES
from gateway.errors import (
    InvalidParameters,
    PaginationNotAvailable,
    ValidationFailed,
    json_response,
)
from gateway.identity import projects
from gateway.identity.paths import path_from_name


def _registry_params(params: dict[str, Any], fields: dict[str, Any]) -> None:
    if (enabled := as_bool(params, "packages_enabled")) is not None:
        fields["packages_enabled"] = enabled
    level = as_choice(params, "package_registry_access_level", REGISTRY_LEVELS)
    if level is not None:
        fields["package_registry_access_level"] = level


def _render(request: web.Request, row: Any) -> dict[str, Any]:
    return entities.project(row, caller.web_base(request), caller.api_base(request))


async def create_project(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    name, path = as_str(params, "name"), as_str(params, "path")
    if not name and not path:
        raise InvalidParameters(
            ["name, path are missing, at least one parameter must be provided"]
        )
    fields: dict[str, Any] = {
        "name": name or path,
        "path": path or path_from_name(name or ""),
        "description": as_str(params, "description") or "",
        "visibility": as_choice(params, "visibility", VISIBILITIES) or "private",
    }
    _registry_params(params, fields)
    # A namespace past int64 does not exist: GitLab's "namespace is not valid".
    namespace_id = as_int(params, "namespace_id",
                          out_of_range=ValidationFailed({"namespace": ["is not valid"]}))
    row = await projects.create(caller.services(request), who, namespace_id, fields)
    return json_response(_render(request, row), 201)


def _filters(params: dict[str, Any]) -> projects.ProjectFilters:
    return projects.ProjectFilters(
        search=as_str(params, "search"), owned=bool(as_bool(params, "owned")),
        membership=bool(as_bool(params, "membership")),
        visibility=as_choice(params, "visibility", VISIBILITIES),
        min_access_level=as_int(params, "min_access_level"),
        id_after=as_int(params, "id_after"), id_before=as_int(params, "id_before"),
        order_by=as_str(params, "order_by") or "created_at",
        sort=as_choice(params, "sort", ("asc", "desc")) or "desc",
    )


async def _list(request: web.Request, group_ref: str | None) -> web.Response:
    who = await caller.caller(request)
    params = await read_params(request)
    filters = _filters(params)
    include_subgroups = bool(as_bool(params, "include_subgroups"))
    if pagination.wants_keyset(request):
        return await _keyset_list(request, who, filters, group_ref, include_subgroups)
    page = pagination.page_of(request)
    found = await projects.list_projects(
        caller.services(request), who, filters, group_ref=group_ref,
        include_subgroups=include_subgroups, limit=page.limit, offset=page.offset,
    )
    return caller.page_response(request, page, [_render(request, r) for r in found.items],
                                found.total)


async def _keyset_list(request: web.Request, who: Any, filters: projects.ProjectFilters,
                       group_ref: str | None, include_subgroups: bool) -> web.Response:
    """GitLab's keyset pages of projects (``Gitlab::Pagination::Keyset``): ordered by id only
    (else its 405), the next page named by ``id_after``/``id_before`` in ``Link``."""
    if filters.order_by != "id":
        raise PaginationNotAvailable(
            "Keyset pagination is not yet available for this type of request")
    keyset = pagination.keyset_of(request, filters.sort)
    bound = {"id_after" if keyset.sort == "asc" else "id_before": keyset.after}
    found = await projects.list_projects(
        caller.services(request), who, replace(filters, **bound), group_ref=group_ref,
        include_subgroups=include_subgroups, limit=keyset.limit, offset=0, count=False,
    )
    rows = found.items
    headers = pagination.keyset_headers(request, keyset, [r.id for r in rows])
    return json_response([_render(request, r) for r in rows[:keyset.per_page]], 200, headers)


async def list_projects(request: web.Request) -> web.Response:
    return await _list(request, None)


async def list_group_projects(request: web.Request) -> web.Response:
    """``GET /groups/:id/projects`` (with ``include_subgroups``)."""
    return await _list(request, request.match_info["id"])


async def get_project(request: web.Request) -> web.Response:
    who = await caller.caller(request)
    row = await projects.get(caller.services(request), who, request.match_info["id"])
    return json_response(_render(request, row))


async def update_project(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    fields: dict[str, Any] = {
        n: v for n in ("name", "path", "description") if (v := as_str(params, n)) is not None
    }
    if (visibility := as_choice(params, "visibility", VISIBILITIES)) is not None:
        fields["visibility"] = visibility
    _registry_params(params, fields)
    row = await projects.update(caller.services(request), who, request.match_info["id"],
                                fields)
    return json_response(_render(request, row))


async def delete_project(request: web.Request) -> web.Response:
    """202 as GitLab, though immediate here."""
    who = await caller.signed_in(request)
    await projects.delete(caller.services(request), who, request.match_info["id"])
    return json_response({"message": "202 Accepted"}, 202)
