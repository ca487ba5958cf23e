"""``GET``/``PUT /api/v4/groups/:id/packages/settings``: a group's duplicate policy.

packgate's REST form of GitLab's namespace package settings (GitLab uses GraphQL), with its
field names, its rights (``admin_package``: Maintainer+ of the group, or an administrator) and
its validation answers (GitLab's namespace package settings). The policy applies to the projects
directly in this group, as on GitLab.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import auth, keys
from gateway.api import caller
from gateway.api.params import as_bool, read_params
from gateway.enums import MAINTAINER
from gateway.errors import InvalidParameters, json_response
from gateway.identity import policy
from gateway.packages import duplicates

_REGEX = "generic_duplicate_exception_regex"


async def _group(request: web.Request) -> tuple[auth.Principal, policy.GroupAccess]:
    # An administration route: personal (project, group) access tokens, GitLab's API 401s.
    who = await caller.signed_in(request)
    group = policy.require_group_visible(
        who, await policy.group_access(request.app[keys.db], who, request.match_info["id"]))
    policy.require_level(who, group.level, MAINTAINER)
    return who, group


def _regex_param(params: dict[str, Any]) -> str | None:
    value = params.get(_REGEX)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidParameters([f"{_REGEX} is invalid"])
    return str(value)  # Grape coerces numbers to String


async def get_settings(request: web.Request) -> web.Response:
    _, group = await _group(request)
    return json_response(await duplicates.package_settings(request.app[keys.db], group.group_id))


async def put_settings(request: web.Request) -> web.Response:
    who, group = await _group(request)
    params = await read_params(request)
    allowed = as_bool(params, "generic_duplicates_allowed")
    regex = _regex_param(params)
    settings = await duplicates.update_package_settings(
        request.app[keys.db], who, group.group_id, allowed=allowed, exception_regex=regex
    )
    return json_response(settings)
