"""``GET``/``PUT /api/v4/projects/:id/packages/quota`` and ``/groups/:id/packages/quota``:
a project's or group's storage quota (packgate's extension; GitLab's storage limits live in its
plans). Read by a project's Reporters / a group's Maintainers and up, set by administrators."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import keys
from gateway.api import caller
from gateway.api.params import as_int, read_params
from gateway.errors import InvalidParameters, json_response
from gateway.governance import quotas

_FIELDS = ("max_bytes", "max_files")


def quota_entity(quota: quotas.Quota) -> dict[str, Any]:
    return {
        "max_bytes": quota.max_bytes,
        "max_files": quota.max_files,
        "effective_max_bytes": quota.effective_max_bytes,
        "effective_max_files": quota.effective_max_files,
        "used_bytes": quota.used.bytes,
        "used_files": quota.used.files,
    }


def _defaults(request: web.Request) -> quotas.Defaults:
    settings = request.app[keys.settings]
    return quotas.Defaults(settings.packages_quota_bytes, settings.packages_quota_files)


async def get_project_quota(request: web.Request) -> web.Response:
    return await _get(request, "project")


async def get_group_quota(request: web.Request) -> web.Response:
    return await _get(request, "group")


async def put_project_quota(request: web.Request) -> web.Response:
    return await _put(request, "project")


async def put_group_quota(request: web.Request) -> web.Response:
    return await _put(request, "group")


async def _get(request: web.Request, scope: str) -> web.Response:
    who = await caller.signed_in(request)
    quota = await quotas.get_quota(request.app[keys.db], who, scope,
                                   request.match_info["id"], _defaults(request))
    return json_response(quota_entity(quota))


async def _put(request: web.Request, scope: str) -> web.Response:
    params = await read_params(request)
    values: dict[str, int | None] = {}
    errors = []
    for name in _FIELDS:
        if name not in params:
            continue
        try:
            value = as_int(params, name)
        except InvalidParameters as exc:
            errors.append(exc.message)
            continue
        if value is not None and value < 0:
            errors.append(f"{name} does not have a valid value")
        values[name] = value
    if errors:
        raise InvalidParameters(errors)
    who = await caller.signed_in(request)
    quota = await quotas.set_quota(
        request.app[keys.db], who, scope, request.match_info["id"],
        _defaults(request), max_bytes=values.get("max_bytes"),
        max_files=values.get("max_files"), given=frozenset(values))
    return json_response(quota_entity(quota))
