"""Groups: GitLab's ``lib/api/groups.rb`` and the Group/Namespace model validations. A top-level
group needs an administrator or a user allowed to create groups; a subgroup Maintainer on its
parent; changes and deletion the group's Owner."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.auth import Principal
from gateway.db.identity import groups as group_queries
from gateway.db.identity import members as member_queries
from gateway.db.identity import users as user_queries
from gateway.enums import MAINTAINER, OWNER, VISIBILITY_RANK
from gateway.errors import ApiError, Forbidden, NotFound, ValidationFailed
from gateway.governance import audit
from gateway.identity import limits, policy
from gateway.identity.context import Services
from gateway.identity.paths import PATH_TEXT, valid_path
from gateway.models import Group, Page


@dataclass(frozen=True, slots=True)
class GroupFilters:
    search: str | None = None
    owned: bool = False
    min_access_level: int | None = None
    top_level_only: bool = False
    order_by: str = "name"
    sort: str = "asc"


def _failed_to_save(problems: dict[str, list[str]]) -> ApiError:
    """``POST /groups`` renders the model's errors as a Ruby hash inside a sentence."""
    body = ", ".join(f":{field}=>[" + ", ".join(f'"{t}"' for t in texts) + "]"
                     for field, texts in problems.items())
    return ApiError(f"Failed to save group {{{body}}}", 400)


def _visibility_against_parent(visibility: str, parent: Group | None) -> dict[str, list[str]]:
    """Group#visibility_level_allowed_by_parent (app/models/group.rb)."""
    if parent is not None and VISIBILITY_RANK[visibility] > VISIBILITY_RANK[parent.visibility]:
        return {"visibility_level": [f"{visibility} is not allowed since the parent group has "
                                     f"a {parent.visibility} visibility."]}
    return {}


async def create(
    svc: Services, who: Principal, *, name: str, path: str, visibility: str, description: str,
    parent_id: int | None,
) -> Group:
    """A group (a subgroup under ``parent_id``); its creator becomes its Owner, as on GitLab."""
    parent = None
    if parent_id is not None:
        access = policy.require_group_visible(who, await policy.group_access(svc.db, who,
                                                                            parent_id))
        policy.require_level(who, access.level, MAINTAINER)
        parent = access.group
    else:
        async with svc.db.connection() as conn:
            user = await user_queries.by_id(conn, who.user_id or 0)
        if not (who.is_admin or (user is not None and user.can_create_group)):
            raise Forbidden()
    problems = limits.too_long({"name": name, "path": path, "description": description},
                               limits.GROUP_LIMITS)
    if not valid_path(path):
        problems.setdefault("path", []).append(PATH_TEXT)
    if parent is not None and parent.depth > limits.MAX_GROUP_ANCESTORS:
        problems["parent_id"] = ["has too deep level of nesting"]
    problems.update(_visibility_against_parent(visibility, parent))
    if problems:
        raise _failed_to_save(problems)
    full_path = f"{parent.full_path}/{path}" if parent else path
    async with svc.changing("group") as conn:
        if await group_queries.path_taken(conn, full_path):
            raise _failed_to_save({"path": ["has already been taken"]})
        group = await group_queries.insert(conn, name, path, visibility, description,
                                           parent.id if parent else None)
        if who.user_id is not None:
            await member_queries.add(conn, "group", group.id, who.user_id, OWNER, None,
                                     who.user_id)
    return group


async def get(svc: Services, who: Principal, ref: str) -> Group:
    return policy.require_group_visible(who, await policy.group_access(svc.db, who, ref)).group


async def list_groups(svc: Services, who: Principal, filters: GroupFilters, *,
                      parent_ref: str | None = None, limit: int, offset: int) -> Page:
    """Groups the caller can see; with ``parent_ref`` the subgroups of that (visible) group."""
    parent_id = None
    if parent_ref is not None:
        parent_id = (await get(svc, who, parent_ref)).id
    async with svc.db.connection() as conn:
        rows, total = await group_queries.list_groups(
            conn, who.user_id, admin=who.is_admin, signed_in=policy.signed_in_user(who),
            search=filters.search, owned=filters.owned,
            min_access_level=filters.min_access_level, top_level_only=filters.top_level_only,
            parent_id=parent_id, order_by=filters.order_by, sort=filters.sort, limit=limit,
            offset=offset,
        )
    return Page(rows, total)


async def _owned(svc: Services, who: Principal, ref: str) -> Group:
    access = policy.require_group_visible(who, await policy.group_access(svc.db, who, ref))
    if not access.admin_group:
        raise Forbidden()
    return access.group


async def update(svc: Services, who: Principal, ref: str, fields: dict[str, str]) -> Group:
    """Owner or administrator. A group never gets more visible than its parent nor less
    visible than its projects and subgroups (``Group#visibility_level_allowed?``)."""
    group = await _owned(svc, who, ref)
    problems = limits.too_long(fields, limits.GROUP_LIMITS)
    if "path" in fields and not valid_path(fields["path"]):
        problems.setdefault("path", []).append(PATH_TEXT)
    async with svc.changing(f"group:{group.id}") as conn:
        visibility = fields.get("visibility")
        if visibility is not None:
            parent = (await group_queries.namespace_by_id(conn, group.parent_id)
                      if group.parent_id else None)
            problems.update(_visibility_against_parent(visibility, parent))
            await _check_children(conn, group.id, visibility, problems)
        if "path" in fields and "path" not in problems:
            parent_path = group.full_path.rpartition("/")[0]
            full_path = f"{parent_path}/{fields['path']}" if parent_path else fields["path"]
            if await group_queries.path_taken(conn, full_path, group.id):
                problems["path"] = ["has already been taken"]
        if problems:
            raise ValidationFailed(problems)
        await group_queries.update(conn, group.id, fields)
        await audit.record(conn, who, "group_settings_updated", entity_type="Group",
                           entity_id=group.id, message="Changed the group's settings",
                           **{f"{k}_from": getattr(group, k, None) for k in fields
                              if hasattr(group, k)}, **fields)
    return await get(svc, who, str(group.id))


async def _check_children(conn: asyncpg.Connection, group_id: int, visibility: str,
                          problems: dict[str, list[str]]) -> None:
    """Group#visibility_level_allowed_by_projects / _by_sub_groups."""
    projects, subgroups = await group_queries.most_visible_children(conn, group_id)
    rank = VISIBILITY_RANK[visibility]
    texts = []
    if projects > rank:
        texts.append(f"{visibility} is not allowed since this group contains projects with "
                     "higher visibility.")
    if subgroups > rank:
        texts.append(f"{visibility} is not allowed since there are sub-groups with higher "
                     "visibility.")
    if texts:
        problems.setdefault("visibility_level", []).extend(texts)


async def delete(svc: Services, who: Principal, ref: str) -> None:
    """GitLab schedules the deletion and answers 202; here it is immediate. The objects of the
    group's packages are queued for removal and the deletion worker woken; the group's bots
    and their tokens go with it (rows cascade), so every gateway drops its cached tokens."""
    group = await _owned(svc, who, ref)
    async with svc.changing(f"group:{group.id}") as conn:
        if not await group_queries.delete(conn, group.id):
            raise NotFound("Group")
    svc.wake_deletions()
