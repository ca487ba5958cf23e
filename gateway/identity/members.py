"""Members of projects and groups: GitLab's ``lib/api/members.rb`` with the rules of
``app/services/members/{creator,update,destroy}_service.rb``, ``app/policies/
{project,group}_member_policy.rb`` and ``app/models/member.rb``.

Project members are managed by Maintainers, group members by Owners. Only an Owner (or an
administrator) grants, changes or removes the Owner role; a group keeps at least one Owner;
the bot of an access token belongs to its own project or group only and is changed by
rotating or revoking its token, not here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from gateway.auth import Principal
from gateway.db.identity import members as member_queries
from gateway.db.identity import users as user_queries
from gateway.enums import ACCESS_LEVELS, GROUP_ACCESS_LEVELS, MAINTAINER, OWNER
from gateway.errors import Conflict, Forbidden, NotFound, RecordNotFound, ValidationFailed
from gateway.governance import audit
from gateway.identity import policy
from gateway.identity.context import Services
from gateway.models import Member, Page, User

# app/models/member.rb: ``validates :user_id, uniqueness: ..., if: :project_bot?``.
BOT_ELSEWHERE = {"user_id": ["project bots cannot be added to other groups / projects"]}


@dataclass(frozen=True, slots=True)
class Source:
    """The project or group a members route names, as the caller sees it."""

    kind: str  # "project" | "group"
    id: int
    level: int  # the caller's
    ancestors: list[int]
    holder_id: int | None = None  # a personal project's namespace owner

    @property
    def manage_level(self) -> int:
        return MAINTAINER if self.kind == "project" else OWNER


async def source(svc: Services, who: Principal, kind: str, ref: str) -> Source:
    """GitLab's ``find_source``: a project or group the caller cannot see is 404."""
    if kind == "project":
        access = policy.require_found_project(await policy.project_access(
            svc.db, who, ref, allow_guest_pull=svc.allow_guest_pull))
        holder = (access.project.namespace_owner_id
                  if access.project.namespace_kind == "user" else None)
        return Source("project", access.project_id, access.level,
                      list(access.project.ancestor_ids), holder)
    group = policy.require_group_visible(who, await policy.group_access(svc.db, who, ref))
    return Source("group", group.group_id, group.level, list(group.group.ancestor_ids))


def _may_manage_owners(who: Principal, src: Source) -> bool:
    """``manage_owners``: an Owner of the project or group, or an administrator."""
    return who.is_admin or src.level >= OWNER


async def list_members(svc: Services, who: Principal, kind: str, ref: str, *, inherited: bool,
                       query: str | None, limit: int, offset: int) -> Page:
    src = await source(svc, who, kind, ref)
    async with svc.db.connection() as conn:
        rows, total = await member_queries.list_members(
            conn, src.kind, src.id, inherited_from=src.ancestors if inherited else None,
            query=query, limit=limit, offset=offset)
    return Page(rows, total)


async def get_member(svc: Services, who: Principal, kind: str, ref: str, user_id: int, *,
                     inherited: bool) -> Member:
    src = await source(svc, who, kind, ref)
    async with svc.db.connection() as conn:
        rows, _ = await member_queries.list_members(
            conn, src.kind, src.id, inherited_from=src.ancestors if inherited else None,
            user_id=user_id)
    if not rows:
        raise RecordNotFound()
    return rows[0]


def _check_level(who: Principal, src: Source, level: int) -> None:
    allowed = GROUP_ACCESS_LEVELS if src.kind == "group" else ACCESS_LEVELS
    if level not in allowed:
        raise ValidationFailed({"access_level": ["is not included in the list"]})
    # Nobody grants more than they hold; only an Owner makes an Owner.
    policy.require_level(who, src.level, max(level, src.manage_level))


def _bot_belongs_elsewhere(user: User, src: Source) -> bool:
    """A project or group access token's bot is a member of its own resource only."""
    if not user.bot:
        return False
    own = user.bot_project_id if src.kind == "project" else user.bot_group_id
    return own != src.id


async def add_members(
    svc: Services, who: Principal, kind: str, ref: str, *, user_refs: list[int | str],
    access_level: int, expires_at: dt.date | None,
) -> Member | None:
    """One member (returned), or several (``user_id=1,2,3``: None; users already members are
    skipped). All or nothing: an unknown user or a foreign bot adds nobody."""
    src = await source(svc, who, kind, ref)
    policy.require_level(who, src.level, src.manage_level)
    _check_level(who, src, access_level)
    single = len(user_refs) == 1
    added: list[int] = []
    async with svc.changing(f"members:{kind}:{src.id}") as conn:
        for user_ref in user_refs:
            user = await _user(conn, user_ref)
            if _bot_belongs_elsewhere(user, src):
                raise ValidationFailed(BOT_ELSEWHERE)
            if not await member_queries.add(conn, src.kind, src.id, user.id, access_level,
                                            expires_at, who.user_id):
                if single:
                    raise Conflict("Member already exists")
                continue
            added.append(user.id)
            await _audit(conn, who, src, "created", user.id, user.username,
                         access_level=access_level)
        if not single:
            return None
        return await member_queries.direct_member(conn, src.kind, src.id, added[0])


async def _audit(conn: asyncpg.Connection, who: Principal, src: Source, verb: str,
                 user_id: int, username: str | None, **extra: object) -> None:
    """GitLab's ``member_created`` / ``member_updated`` / ``member_destroyed``."""
    await audit.record(
        conn, who, f"member_{verb}", entity_type="Project" if src.kind == "project" else "Group",
        entity_id=src.id, message=f"{verb.capitalize()} member {username or user_id}",
        target=audit.Target("User", user_id, username), **extra)


async def _user(conn: asyncpg.Connection, ref: int | str) -> User:
    user = (await user_queries.by_id(conn, ref) if isinstance(ref, int)
            else await user_queries.by_username(conn, ref))
    if user is None:
        raise NotFound("User")
    return user


async def _existing(conn: asyncpg.Connection, src: Source, user_id: int) -> Member:
    member = await member_queries.direct_member(conn, src.kind, src.id, user_id)
    if member is None:
        raise RecordNotFound()
    return member


async def _check_owner_change(conn: asyncpg.Connection, who: Principal, src: Source,
                              member: Member, *, removing_owner: bool) -> None:
    """Only Owners touch Owners; a group's last Owner stays (GroupMemberPolicy ``last_owner``,
    Members::DestroyService's lock around ``last_owner?``); the holder of a personal project
    stays its Owner (ProjectMemberPolicy ``target_is_holder_of_the_personal_namespace``)."""
    if src.holder_id is not None and member.id == src.holder_id:
        raise Forbidden()
    if member.access_level >= OWNER and not _may_manage_owners(who, src):
        raise Forbidden()
    if src.kind == "group" and member.access_level >= OWNER and removing_owner:
        await member_queries.lock(conn, src.kind, src.id)
        if not await member_queries.other_group_owners(conn, src.id, member.id):
            raise Forbidden()


async def update_member(svc: Services, who: Principal, kind: str, ref: str, user_id: int, *,
                        access_level: int, expires_at: dt.date | None) -> Member:
    src = await source(svc, who, kind, ref)
    policy.require_level(who, src.level, src.manage_level)
    _check_level(who, src, access_level)
    async with svc.changing(f"members:{kind}:{src.id}") as conn:
        member = await _existing(conn, src, user_id)
        if member.bot:
            raise Forbidden()  # ``~project_bot & can?(:admin_*_member)`` enables updates
        await _check_owner_change(conn, who, src, member,
                                  removing_owner=access_level < OWNER)
        await member_queries.update(conn, src.kind, src.id, user_id, access_level, expires_at)
        await _audit(conn, who, src, "updated", user_id, member.username,
                     access_level_from=member.access_level, access_level=access_level)
        return await _existing(conn, src, user_id)


async def remove_member(svc: Services, who: Principal, kind: str, ref: str,
                        user_id: int) -> None:
    """Managers remove others; every member may leave by removing themself (except a group's
    last Owner, and the owner of a personal project)."""
    src = await source(svc, who, kind, ref)
    leaving = user_id == who.user_id
    if not leaving:
        policy.require_level(who, src.level, src.manage_level)
    async with svc.changing(f"members:{kind}:{src.id}") as conn:
        member = await _existing(conn, src, user_id)
        if member.bot and not leaving:
            raise Forbidden()  # a bot leaves with its token (revoke it)
        if not leaving or member.access_level >= OWNER:
            await _check_owner_change(conn, who, src, member, removing_owner=True)
        await member_queries.remove(conn, src.kind, src.id, user_id)
        await _audit(conn, who, src, "destroyed", user_id, member.username,
                     access_level_from=member.access_level)
