"""The whole URL table, with the access each route needs beside it."""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.api import (
    audit_events,
    features,
    generic_packages,
    groups,
    health,
    members,
    metrics,
    package_settings,
    project_packages,
    projects,
    protection_rules,
    resumable,
    tokens,
    users,
)
from gateway.errors import GatewayError

_GENERIC = "/api/v4/projects/{id}/packages/generic/{tail:.+}"
_PACKAGES = "/api/v4/projects/{id}/packages"
_SESSION = _PACKAGES + "/uploads/{session_id}"


class ApiV3Gone(GatewayError):
    status = 410
    key = "error"

    def __init__(self) -> None:
        super().__init__("API V3 is no longer supported. Use API V4 instead.")


async def api_v3(request: web.Request) -> web.Response:
    raise ApiV3Gone()


def setup_routes(app: web.Application) -> None:
    r = app.router
    # Generic packages: write = Developer+ or a write deploy token; read = read_package.
    # A PUT that carries Upload-Complete is an IETF resumable upload (same checks as a PUT).
    r.add_route("PUT", _GENERIC, resumable.put_or_create,
                expect_handler=generic_packages.expect_nothing_yet)
    # Resumable uploads (tus 1.0, IETF): created at the file, continued at the session's URL;
    # every request needs what a PUT needs.
    r.add_route("POST", _GENERIC, resumable.create_upload,
                expect_handler=generic_packages.expect_nothing_yet)
    r.add_route("OPTIONS", _GENERIC, resumable.tus_options)
    r.add_route("HEAD", _SESSION, resumable.session_head)
    r.add_route("PATCH", _SESSION, resumable.session_patch,
                expect_handler=generic_packages.expect_nothing_yet)
    r.add_route("DELETE", _SESSION, resumable.session_delete)
    r.add_route("OPTIONS", _SESSION, resumable.tus_options)
    r.add_route("GET", _GENERIC, generic_packages.get_file)
    r.add_route("HEAD", _GENERIC, generic_packages.head_file)
    # Delete by path (a file, or a whole version): destroy_package, as the Packages API.
    r.add_route("DELETE", _GENERIC, generic_packages.delete_by_path)
    # Packages API: reads need read_package, deletes destroy_package (Maintainer+).
    r.add_get(_PACKAGES, project_packages.list_project_packages)
    r.add_get(_PACKAGES + "/{package_id}", project_packages.get_package)
    r.add_delete(_PACKAGES + "/{package_id}", project_packages.delete_package)
    r.add_get(_PACKAGES + "/{package_id}/package_files", project_packages.list_package_files)
    r.add_delete(_PACKAGES + "/{package_id}/package_files/{package_file_id}",
                 project_packages.delete_package_file)
    r.add_get("/api/v4/groups/{id}/packages", project_packages.list_group_packages)
    # A group's duplicate policy: administrator or the group's Maintainer+.
    r.add_get("/api/v4/groups/{id}/packages/settings", package_settings.get_settings)
    r.add_put("/api/v4/groups/{id}/packages/settings", package_settings.put_settings)
    # Package protection rules (GitLab's REST API): the project's Maintainer+.
    rules = _PACKAGES + "/protection/rules"
    r.add_get(rules, protection_rules.list_rules)
    r.add_post(rules, protection_rules.create_rule)
    r.add_patch(rules + "/{package_protection_rule_id}", protection_rules.update_rule)
    r.add_delete(rules + "/{package_protection_rule_id}", protection_rules.delete_rule)
    # Feature flags: accepted from administrators for compatibility, nothing to switch.
    # python-gitlab asks for /features//:name (its path ends in a slash); GitLab takes both.
    r.add_post("/api/v4/features{sep:/+}{name}", features.set_feature)
    # Audit events: the instance's for administrators; a project's or group's for its
    # Developers+ (their own events only, below Maintainer / Owner).
    r.add_get("/api/v4/audit_events", audit_events.list_events)
    r.add_get("/api/v4/audit_events/{audit_event_id}", audit_events.get_event)
    r.add_get(_SOURCE + "/audit_events", audit_events.list_events)
    r.add_get(_SOURCE + "/audit_events/{audit_event_id}", audit_events.get_event)
    _identity_routes(r)
    r.add_route("*", "/api/v3/{tail:.*}", api_v3)
    # Operations (no authentication).
    r.add_get("/-/health", health.live)
    r.add_get("/-/readiness", health.ready)
    if app[keys.settings].metrics:
        r.add_get("/metrics", metrics.scrape)  # GATEWAY_METRICS_TOKEN, if set


_V4 = "/api/v4"
_SOURCE = _V4 + "/{source:projects|groups}/{id}"


def _identity_routes(r: web.UrlDispatcher) -> None:
    """Administration (GitLab's REST paths). Personal/project/group access tokens only."""
    # Users: reading needs a signed-in caller (read_user suffices); changes need an admin.
    r.add_get(_V4 + "/user", users.current_user)
    r.add_get(_V4 + "/users", users.list_users)
    r.add_post(_V4 + "/users", users.create_user)  # admin
    r.add_get(_V4 + "/users/{user_id}", users.get_user)
    r.add_put(_V4 + "/users/{user_id}", users.update_user)  # admin
    r.add_delete(_V4 + "/users/{user_id}", users.delete_user)  # admin
    r.add_post(_V4 + "/users/{user_id}/block", users.block_user)  # admin
    r.add_post(_V4 + "/users/{user_id}/unblock", users.unblock_user)  # admin
    r.add_post(_V4 + "/users/{user_id}/deactivate", users.deactivate_user)  # admin
    r.add_post(_V4 + "/users/{user_id}/activate", users.activate_user)  # admin
    # Personal access tokens: admins mint them; owners (or admins) read, revoke, rotate.
    r.add_post(_V4 + "/users/{user_id}/personal_access_tokens",
               tokens.create_personal_access_token)  # admin
    r.add_get(_V4 + "/personal_access_tokens", tokens.list_personal_access_tokens)
    r.add_get(_V4 + "/personal_access_tokens/{token_id}", tokens.get_personal_access_token)
    r.add_delete(_V4 + "/personal_access_tokens/{token_id}",
                 tokens.revoke_personal_access_token)
    r.add_post(_V4 + "/personal_access_tokens/{token_id}/rotate",
               tokens.rotate_personal_access_token)
    # Groups: create = admin or can_create_group (subgroup: parent Maintainer); change = Owner.
    r.add_post(_V4 + "/groups", groups.create_group)
    r.add_get(_V4 + "/groups", groups.list_groups)
    r.add_get(_V4 + "/groups/{id}", groups.get_group)
    r.add_put(_V4 + "/groups/{id}", groups.update_group)  # Owner
    r.add_delete(_V4 + "/groups/{id}", groups.delete_group)  # Owner
    r.add_get(_V4 + "/groups/{id}/subgroups", groups.list_subgroups)
    r.add_get(_V4 + "/groups/{id}/projects", projects.list_group_projects)
    # Projects: create in a namespace the caller may use; change = Maintainer; delete = Owner.
    r.add_post(_V4 + "/projects", projects.create_project)
    r.add_get(_V4 + "/projects", projects.list_projects)
    r.add_get(_V4 + "/projects/{id}", projects.get_project)
    r.add_put(_V4 + "/projects/{id}", projects.update_project)  # Maintainer
    r.add_delete(_V4 + "/projects/{id}", projects.delete_project)  # Owner
    # Members: read = can see it; manage = project Maintainer / group Owner.
    r.add_get(_SOURCE + "/members", members.list_members)
    r.add_post(_SOURCE + "/members", members.add_member)
    r.add_get(_SOURCE + "/members/{all:all}", members.list_members)
    r.add_get(_SOURCE + "/members/{all:all}/{user_id}", members.get_member)
    r.add_get(_SOURCE + "/members/{user_id}", members.get_member)
    r.add_put(_SOURCE + "/members/{user_id}", members.update_member)
    r.add_delete(_SOURCE + "/members/{user_id}", members.remove_member)
    # Project (Maintainer) and group (Owner) access tokens: bot members.
    r.add_get(_SOURCE + "/access_tokens", tokens.list_resource_tokens)
    r.add_post(_SOURCE + "/access_tokens", tokens.create_resource_token)
    r.add_get(_SOURCE + "/access_tokens/{token_id}", tokens.get_resource_token)
    r.add_delete(_SOURCE + "/access_tokens/{token_id}", tokens.revoke_resource_token)
    r.add_post(_SOURCE + "/access_tokens/{token_id}/rotate", tokens.rotate_resource_token)
    # Deploy tokens: project or group Maintainer; the instance-wide list for admins.
    r.add_get(_SOURCE + "/deploy_tokens", tokens.list_deploy_tokens)
    r.add_post(_SOURCE + "/deploy_tokens", tokens.create_deploy_token)
    r.add_get(_SOURCE + "/deploy_tokens/{token_id}", tokens.get_deploy_token)
    r.add_delete(_SOURCE + "/deploy_tokens/{token_id}", tokens.delete_deploy_token)
    r.add_get(_V4 + "/deploy_tokens", tokens.list_all_deploy_tokens)  # admin
    # CI job tokens (extension): admin or project Maintainer mint, list and revoke them.
    r.add_post(_V4 + "/projects/{id}/job_tokens", tokens.mint_job_token)
    r.add_get(_V4 + "/projects/{id}/job_tokens", tokens.list_job_tokens)
    r.add_delete(_V4 + "/projects/{id}/job_tokens/{job_token_id}", tokens.revoke_job_token)
