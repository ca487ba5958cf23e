"""``/projects/:id/packages/protection/rules``: GitLab's package protection rules API
(``lib/api/project_packages_protection_rules.rb``), which python-gitlab's
``project.package_protection_rules`` speaks.

GitLab's order: Grape validates the parameters first (400 ``{"error": …}``), then
``authenticate!`` (401) and ``authorize_admin_package!``: the project must be visible (404
``Project Not Found``) and the caller its Maintainer or more (403). A model that fails
validation is ``422 {"message": {"error": [full messages]}}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import auth, keys
from gateway.api import caller
from gateway.api.params import as_choice, as_str, path_int, read_params
from gateway.enums import MAINTAINER
from gateway.errors import API_HEADERS, InvalidParameters, RecordNotFound, json_response
from gateway.governance import protection
from gateway.identity import policy
from gateway.models import ProtectionRule

_RULE_ID = "package_protection_rule_id"


def rule_entity(rule: ProtectionRule) -> dict[str, Any]:
    """``API::Entities::Projects::Packages::Protection::Rule``."""
    return {
        "id": rule.id,
        "project_id": rule.project_id,
        "package_name_pattern": rule.package_name_pattern,
        "package_type": protection.PACKAGE_TYPE_NAME[rule.package_type],
        "minimum_access_level_for_delete": protection.level_name(
            rule.minimum_access_level_for_delete),
        "minimum_access_level_for_push": protection.level_name(
            rule.minimum_access_level_for_push),
    }


async def _maintained_project(request: web.Request
                              ) -> tuple[auth.Principal, policy.ProjectAccess]:
    who = await caller.signed_in(request)
    access = policy.require_found_project(await policy.project_access(
        request.app[keys.db], who, request.match_info["id"],
        allow_guest_pull=request.app[keys.settings].allow_guest_pull))
    policy.require_level(who, access.level, MAINTAINER)
    return who, access


def _change(params: dict[str, Any], *, required: bool) -> protection.RuleChange:
    """Grape's declared parameters, every failure reported together."""
    errors: list[str] = []

    def read(name: str, allowed: tuple[str, ...] | None = None, *, must: bool = False
             ) -> str | None:
        try:
            if must and params.get(name) is None:
                raise InvalidParameters([f"{name} is missing"])
            if allowed is None:
                return as_str(params, name)
            return as_choice(params, name, allowed)
        except InvalidParameters as exc:
            errors.append(exc.message)
            return None

    pattern = read("package_name_pattern", must=required)
    package_type = read("package_type", protection.RULE_PACKAGE_TYPES, must=required)
    push = read("minimum_access_level_for_push", tuple(protection.PUSH_LEVELS))
    delete = read("minimum_access_level_for_delete", tuple(protection.DELETE_LEVELS))
    if errors:
        raise InvalidParameters(errors)
    return protection.RuleChange(
        package_name_pattern=pattern, package_type=package_type,
        push=push, push_given="minimum_access_level_for_push" in params,
        delete=delete, delete_given="minimum_access_level_for_delete" in params,
    )


def _rule_id(request: web.Request) -> int:
    return path_int(request, _RULE_ID, missing=RecordNotFound())


async def list_rules(request: web.Request) -> web.Response:
    _, access = await _maintained_project(request)
    rules = await protection.list_rules(request.app[keys.db], access.project_id)
    return json_response([rule_entity(r) for r in rules])


async def create_rule(request: web.Request) -> web.Response:
    change = _change(await read_params(request), required=True)
    who, access = await _maintained_project(request)
    rule = await protection.create_rule(request.app[keys.db], who, access.project_id, change)
    return json_response(rule_entity(rule), 201)


async def update_rule(request: web.Request) -> web.Response:
    rule_id = _rule_id(request)
    change = _change(await read_params(request), required=False)
    who, access = await _maintained_project(request)
    rule = await protection.update_rule(request.app[keys.db], who, access.project_id, rule_id,
                                        change)
    return json_response(rule_entity(rule))


async def delete_rule(request: web.Request) -> web.Response:
    rule_id = _rule_id(request)
    who, access = await _maintained_project(request)
    await protection.delete_rule(request.app[keys.db], who, access.project_id, rule_id)
    return web.Response(status=204, headers=API_HEADERS)
