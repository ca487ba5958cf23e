"""GitLab's permission model: what a principal may do to a project or a group.

``ProjectPolicy`` and ``GroupPolicy`` in GitLab (``app/policies/project_policy.rb``,
``group_policy.rb``) reduced to what a package registry needs: who sees a project or a group,
who reads, writes and deletes packages, and who manages it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Principal
from gateway.db.identity import groups as group_queries
from gateway.db.identity import projects as project_queries
from gateway.db.pool import Database
from gateway.enums import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    MINIMAL_ACCESS,
    OWNER,
    REGISTRY_LEVEL_FOR_VISIBILITY,
    REPORTER,
)
from gateway.errors import Forbidden, NotFound, Unauthorized
from gateway.models import Group, Project
from gateway.numbers import id_or_path


@dataclass(frozen=True, slots=True)
class ProjectAccess:
    """A project as one caller sees it, with GitLab's package abilities."""

    project: Project
    level: int
    read_project: bool
    read_package: bool
    create_package: bool
    destroy_package: bool

    @property
    def project_id(self) -> int:
        return self.project.id


def registry_access_level(project: Project) -> str:
    """GitLab's ``package_registry_access_level``: the stored choice, else what GitLab derives
    from ``packages_enabled`` and the visibility (``Project#set_package_registry_access_level``)."""
    if project.package_registry_access_level:
        return project.package_registry_access_level
    if not project.packages_enabled:
        return "disabled"
    return REGISTRY_LEVEL_FOR_VISIBILITY[project.visibility]


def abilities(who: Principal, project: Project, *, allow_guest_pull: bool) -> ProjectAccess:
    """GitLab's project policy: read_project, read_package, create_package, destroy_package."""
    level = 0
    signed_in = False  # a signed-in, non-external user: sees internal projects
    deploy_read = deploy_write = False
    if who.kind in ("user", "job_token"):
        if who.kind == "user" or who.job_project_id == project.id:
            level = project.access_level
            signed_in = not who.external
        # A job token outside its own project keeps only what anonymous callers have.
    elif who.kind == "deploy_token":
        applies = who.deploy_project_id == project.id or (
            who.deploy_group_id is not None and who.deploy_group_id in project.ancestor_ids
        )
        if applies:
            deploy_write = "write_package_registry" in who.scopes
            deploy_read = deploy_write or "read_package_registry" in who.scopes
    admin = who.is_admin
    public = project.visibility == "public"
    internal_ok = project.visibility == "internal" and signed_in
    registry = registry_access_level(project)
    enabled = project.packages_enabled and registry != "disabled"
    read_project = admin or level >= GUEST or public or internal_ok or deploy_read
    member_read = admin or level >= REPORTER or (allow_guest_pull and level >= GUEST) or deploy_read
    if registry == "private":  # project members only, whatever the visibility
        read_package = enabled and member_read
    elif registry == "public":  # anyone, anonymous callers included
        read_package = enabled
    else:
        read_package = enabled and (member_read or public or internal_ok)
    create_package = enabled and (admin or level >= DEVELOPER or deploy_write)
    # GitLab lets a deploy token that may write packages delete them too.
    destroy_package = enabled and (admin or level >= MAINTAINER or deploy_write)
    return ProjectAccess(project, level, read_project, read_package, create_package,
                         destroy_package)


async def project_access(
    db: Database, who: Principal, ref: str, *, allow_guest_pull: bool
) -> ProjectAccess | None:
    """The project named by ``ref`` (id or full path) as ``who`` sees it; None if missing."""
    key = id_or_path(ref)
    if key is None:
        return None
    async with db.connection() as conn:
        project = await project_queries.for_caller(conn, key, who.user_id)
    if project is None:
        return None
    return abilities(who, project, allow_guest_pull=allow_guest_pull)


def require_visible(who: Principal, access: ProjectAccess | None) -> ProjectAccess:
    """A missing or invisible project: 401 for anonymous callers, 404 for the others."""
    if access is None or not access.read_project:
        if who.anonymous:
            raise Unauthorized()
        raise NotFound()
    return access


def require_read_package(who: Principal, access: ProjectAccess | None) -> ProjectAccess:
    if access is not None and access.read_package:
        return access  # a registry open to everyone is readable without seeing the project
    access = require_visible(who, access)
    if not access.read_package:
        raise Forbidden()
    return access


def require_create_package(who: Principal, access: ProjectAccess | None) -> ProjectAccess:
    if access is None or not access.read_project:
        raise NotFound()
    if not access.create_package:
        raise Forbidden()
    return access


def require_destroy_package(who: Principal, access: ProjectAccess | None) -> ProjectAccess:
    access = require_visible(who, access)
    if not access.destroy_package:
        raise Forbidden()
    return access


def require_found_project(access: ProjectAccess | None) -> ProjectAccess:
    """GitLab's ``find_project!``: missing or invisible is ``404 Project Not Found``."""
    if access is None or not access.read_project:
        raise NotFound("Project")
    return access


@dataclass(frozen=True, slots=True)
class GroupAccess:
    """A group as one caller sees it."""

    group: Group
    level: int
    read_group: bool
    admin_group: bool  # Owner or administrator: settings, members, deletion

    @property
    def group_id(self) -> int:
        return self.group.id


def group_abilities(who: Principal, group: Group) -> GroupAccess:
    level = group.access_level if who.kind == "user" else 0
    signed_in = who.kind == "user" and not who.external
    deploy = who.kind == "deploy_token" and who.deploy_group_id in group.ancestor_ids
    read_group = (
        who.is_admin
        or level >= MINIMAL_ACCESS
        or group.visibility == "public"
        or (group.visibility == "internal" and signed_in)
        or deploy
    )
    return GroupAccess(group, level, read_group, who.is_admin or level >= OWNER)


async def group_access(db: Database, who: Principal, ref: str | int) -> GroupAccess | None:
    """The group named by ``ref`` (id or full path) as ``who`` sees it; None if missing."""
    key = ref if isinstance(ref, int) else id_or_path(ref)
    if key is None:
        return None
    async with db.connection() as conn:
        group = await group_queries.for_caller(conn, key, who.user_id)
    if group is None:
        return None
    return group_abilities(who, group)


def require_group_visible(who: Principal, access: GroupAccess | None) -> GroupAccess:
    """GitLab's ``find_group!``: a missing or invisible group is ``404 Group Not Found``."""
    if access is None or not access.read_group:
        raise NotFound("Group")
    return access


def require_level(who: Principal, level: int, minimum: int) -> None:
    """Administrators may do anything; others need ``minimum`` in the project or group."""
    if not who.is_admin and level < minimum:
        raise Forbidden()


def signed_in_user(who: Principal) -> bool:
    """A signed-in human or bot user that is not external: sees internal projects."""
    return who.kind == "user" and not who.external


async def packages_access(
    db: Database, who: Principal, ref: str, *, allow_guest_pull: bool, destroy: bool = False
) -> ProjectAccess:
    """The Packages API's checks in its order (GitLab's ``find_project!``, then
    ``read_package``, then for deletes ``destroy_package``): a missing or invisible project is
    ``404 Project Not Found`` for everyone, a missing ability 403."""
    access = require_found_project(
        await project_access(db, who, ref, allow_guest_pull=allow_guest_pull)
    )
    if not access.read_package or (destroy and not access.destroy_package):
        raise Forbidden()
    return access
