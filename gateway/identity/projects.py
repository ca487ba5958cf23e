"""Projects: GitLab's ``lib/api/projects.rb``, ``Projects::CreateService`` and the Project
model's validations. A project lives in a group (Developer+ creates there) or in a user's
personal namespace (its owner, within ``projects_limit``); Maintainers change it; Owners
delete it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.auth import Principal
from gateway.db.identity import groups as group_queries
from gateway.db.identity import members as member_queries
from gateway.db.identity import projects as project_queries
from gateway.db.identity import users as user_queries
from gateway.enums import (
    DEVELOPER,
    MAINTAINER,
    OWNER,
    REGISTRY_LEVEL_FOR_VISIBILITY,
    VISIBILITY_RANK,
)
from gateway.errors import Forbidden, GatewayError, NotFound, ValidationFailed
from gateway.identity import limits, policy
from gateway.identity.context import Services
from gateway.identity.paths import PATH_TEXT, valid_path
from gateway.models import Group, Page, Project

_NAMESPACE_INVALID = {"namespace": ["is not valid"]}


@dataclass(frozen=True, slots=True)
class ProjectFilters:
    search: str | None = None
    owned: bool = False
    membership: bool = False
    visibility: str | None = None
    min_access_level: int | None = None
    # GitLab's id_after / id_before: only projects with a greater / smaller id.
    id_after: int | None = None
    id_before: int | None = None
    order_by: str = "created_at"
    sort: str = "desc"


def registry_fields(fields: dict[str, Any], visibility: str) -> None:
    """Keep ``packages_enabled`` and ``package_registry_access_level`` consistent, as GitLab's
    ``set_package_registry_access_level`` does: setting one sets the other."""
    level = fields.get("package_registry_access_level")
    if level is not None:
        fields["packages_enabled"] = level != "disabled"
    elif "packages_enabled" in fields:
        fields["package_registry_access_level"] = (
            REGISTRY_LEVEL_FOR_VISIBILITY[visibility] if fields["packages_enabled"]
            else "disabled"
        )


class ProjectLimitReached(GatewayError):
    """Project#check_personal_projects_limit, which the API renders as ``error!(errors, 403)``:
    the ``limit_reached`` errors as a list."""

    status = 403

    def __init__(self, limit: int) -> None:
        super().__init__(
            "You cannot create projects in your personal namespace. Contact your GitLab "
            "administrator." if limit == 0 else
            f"You've reached your limit of {limit} projects created. Contact your GitLab "
            "administrator."
        )

    def body(self) -> dict[str, Any]:
        return {"message": [self.message]}


async def _target_namespace(svc: Services, who: Principal, namespace_id: int | None,
                            conn: asyncpg.Connection) -> Group:
    """The namespace a new project goes to: ``namespace_id``, else the caller's own. GitLab
    answers 400 "namespace is not valid" when it is missing or the caller may not create
    projects there (``create_projects``: Developer+ of a group, the owner of a personal
    namespace, administrators; never external users or bots, whom GitLab gives no project
    creation outside their own resource)."""
    if namespace_id is None:
        namespace_id = await user_queries.namespace_id(conn, who.user_id or 0)
    namespace = (await group_queries.namespace_by_id(conn, namespace_id)
                 if namespace_id is not None else None)
    if namespace is None:
        raise ValidationFailed(_NAMESPACE_INVALID)
    if namespace.kind == "user":
        if not (who.is_admin or namespace.owner_id == who.user_id):
            raise ValidationFailed(_NAMESPACE_INVALID)
        return namespace
    if (who.external or who.bot) and not who.is_admin:
        raise ValidationFailed(_NAMESPACE_INVALID)
    access = await policy.group_access(svc.db, who, namespace.id)
    if access is None or not (who.is_admin or access.level >= DEVELOPER):
        raise ValidationFailed(_NAMESPACE_INVALID)
    return access.group


async def _check_personal_limit(conn: asyncpg.Connection, who: Principal) -> None:
    """``User#can_create_project?``: within ``projects_limit`` (bots hold 0, and external users
    may not create projects: GitLab sets their limit to 0)."""
    user = await user_queries.by_id(conn, who.user_id or 0)
    if user is None:
        raise Forbidden()
    limit = 0 if user.external or user.bot else user.projects_limit
    if await user_queries.personal_project_count(conn, user.id) >= limit:
        raise ProjectLimitReached(limit)


def _check_fields(fields: dict[str, Any]) -> dict[str, list[str]]:
    problems = limits.too_long(fields, limits.PROJECT_LIMITS)
    if "path" in fields and not valid_path(fields["path"]):
        problems.setdefault("path", []).append(PATH_TEXT)
    return problems


async def create(svc: Services, who: Principal, namespace_id: int | None,
                 fields: dict[str, Any]) -> Project:
    """In a group, a visibility above the group's is lowered to it
    (``Projects::CreateService``); in a personal namespace its owner becomes the Owner."""
    fields = dict(fields)
    async with svc.changing("project") as conn:
        namespace = await _target_namespace(svc, who, namespace_id, conn)
        if namespace.kind == "user":
            await _check_personal_limit(conn, who)
        elif VISIBILITY_RANK[fields["visibility"]] > VISIBILITY_RANK[namespace.visibility]:
            fields["visibility"] = namespace.visibility
        registry_fields(fields, fields["visibility"])
        problems = _check_fields(fields)
        for taken in await project_queries.names_taken(conn, namespace.id, fields["path"],
                                                       fields["name"]):
            problems[taken] = ["has already been taken"]
        if problems:
            raise ValidationFailed(problems)
        project = await project_queries.insert(conn, namespace.id, fields, who.user_id)
        if namespace.kind == "user" and namespace.owner_id is not None:
            await member_queries.add(conn, "project", project.id, namespace.owner_id, OWNER,
                                     None, who.user_id)
    return await get(svc, who, str(project.id))


async def get(svc: Services, who: Principal, ref: str) -> Project:
    access = policy.require_found_project(await policy.project_access(
        svc.db, who, ref, allow_guest_pull=svc.allow_guest_pull))
    return access.project


async def list_projects(svc: Services, who: Principal, filters: ProjectFilters, *,
                        group_ref: str | None = None, include_subgroups: bool = False,
                        limit: int, offset: int, count: bool = True) -> Page:
    """Projects the caller can see; with ``group_ref`` those of that (visible) group. Without
    ``count`` (keyset pages) the total is not counted (-1)."""
    namespace_ids = None
    async with svc.db.connection() as conn:
        if group_ref is not None:
            access = policy.require_group_visible(
                who, await policy.group_access(svc.db, who, group_ref))
            namespace_ids = [access.group_id]
            if include_subgroups:
                namespace_ids = await group_queries.group_and_descendant_ids(conn,
                                                                             access.group_id)
        rows, total = await project_queries.list_projects(
            conn, who.user_id, admin=who.is_admin, signed_in=policy.signed_in_user(who),
            search=filters.search, owned=filters.owned, membership=filters.membership,
            visibility=filters.visibility, min_access_level=filters.min_access_level,
            namespace_ids=namespace_ids, id_after=filters.id_after, id_before=filters.id_before,
            order_by=filters.order_by, sort=filters.sort, limit=limit, offset=offset,
            count=count,
        )
    return Page(rows, total)


async def update(svc: Services, who: Principal, ref: str, fields: dict[str, Any]) -> Project:
    """Maintainer+ (``admin_project``). A visibility above the group's is GitLab's 400
    ``visibility_level: "<level> is not allowed in a <group level> group."``."""
    access = policy.require_found_project(await policy.project_access(
        svc.db, who, ref, allow_guest_pull=svc.allow_guest_pull))
    policy.require_level(who, access.level, MAINTAINER)
    project = access.project
    fields = dict(fields)
    registry_fields(fields, fields.get("visibility", project.visibility))
    problems = _check_fields(fields)
    visibility = fields.get("visibility")
    if (visibility is not None and project.namespace_kind == "group"
            and VISIBILITY_RANK[visibility] > VISIBILITY_RANK[project.namespace_visibility]):
        problems["visibility_level"] = [
            f"{visibility} is not allowed in a {project.namespace_visibility} group."]
    async with svc.changing(f"project:{project.id}") as conn:
        for taken in await project_queries.names_taken(
            conn, project.namespace_id, fields.get("path", ""), fields.get("name", ""),
            project.id,
        ):
            problems[taken] = ["has already been taken"]
        if problems:
            raise ValidationFailed(problems)
        await project_queries.update(conn, project.id, fields)
    return await get(svc, who, str(project.id))


async def delete(svc: Services, who: Principal, ref: str) -> None:
    """Owner or administrator (``remove_project``); immediate here, 202 as GitLab. Its
    packages' objects are queued for removal and the worker woken; its bots and their tokens
    go with it, so every gateway drops its cached tokens."""
    access = policy.require_found_project(await policy.project_access(
        svc.db, who, ref, allow_guest_pull=svc.allow_guest_pull))
    if not (who.is_admin or access.level >= OWNER):
        raise Forbidden()
    async with svc.changing(f"project:{access.project_id}") as conn:
        if not await project_queries.delete(conn, access.project_id):
            raise NotFound("Project")
    svc.wake_deletions()
