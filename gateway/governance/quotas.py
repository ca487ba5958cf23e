"""Storage quotas: how many bytes and files of package files a project, and a group with
everything below it, may hold. A project without a limit of its own has the instance's default
(``GATEWAY_PACKAGES_QUOTA_BYTES`` / ``_FILES``); a group's limit holds for all its projects
and subgroups together; an upload must fit every limit above it.

Race-free: the commit takes each quota's advisory lock (outermost group first, the project
last) inside its transaction, then sums what is committed and adds the new file. Commits that
count against one quota take turns on every gateway, so no two of them can both squeeze into
the last bytes. The sums read an index only (``package_files (project_id) INCLUDE (size)``);
the limits come with the protection check in the upload's one query (``gateway.governance.gate``),
so projects without any limit pay nothing more. Before the body is read the same sums, without
the lock, refuse an upload whose ``Content-Length`` (or the file count) already does not fit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import asyncpg

from gateway.auth import Principal
from gateway.db import governance as q
from gateway.db.pool import Database
from gateway.enums import MAINTAINER, REPORTER
from gateway.errors import GatewayError, NotFound
from gateway.governance import audit
from gateway.identity import policy
from gateway.identity.users import require_admin
from gateway.models import Project, QuotaHolder, Usage


class QuotaExceeded(GatewayError):
    """413: the closest GitLab answer to "this does not fit" (its own storage limits refuse
    pushes without a package-API status); the message says which limit."""

    status = 413

    def __init__(self) -> None:
        super().__init__("413 Request Entity Too Large - storage quota exceeded")


@dataclass(frozen=True, slots=True)
class Defaults:
    """The instance's default quota of a project (0: none)."""

    max_bytes: int = 0
    max_files: int = 0


@dataclass
class QuotaStats:
    """This process's figures for /metrics: refusals, and the usage last read."""

    refusals: dict[tuple[str, str], int] = field(default_factory=dict)
    limited: list[tuple[str, int, int | None, int | None, Usage]] = field(default_factory=list)
    total: Usage | None = None
    read_at: float = 0.0

    def refused(self, scope: str, stage: str) -> None:
        self.refusals[(scope, stage)] = self.refusals.get((scope, stage), 0) + 1


def _effective(holder: QuotaHolder, defaults: Defaults) -> tuple[int | None, int | None]:
    if holder.scope != "project" or holder.max_bytes is not None or holder.max_files is not None:
        return holder.max_bytes, holder.max_files
    return defaults.max_bytes or None, defaults.max_files or None


def _over(limits: tuple[int | None, int | None], used: Usage, size: int) -> bool:
    max_bytes, max_files = limits
    return ((max_bytes is not None and used.bytes + size > max_bytes)
            or (max_files is not None and used.files + 1 > max_files))


async def check_holders(conn: asyncpg.Connection, holders: list[QuotaHolder], size: int,
                        defaults: Defaults, stats: QuotaStats | None, *, locked: bool) -> None:
    """Refuse an upload of ``size`` bytes that one of the quotas above it cannot take.

    ``locked``: in the commit's transaction, each quota's lock is taken before its sum, which
    makes the answer authoritative; without, the early check before the body is read."""
    for holder in holders:
        limits = _effective(holder, defaults)
        if limits == (None, None):
            continue
        if locked:
            await q.lock_quota(conn, holder.scope, holder.id)
        if _over(limits, await q.usage(conn, holder.scope, holder.id), size):
            if stats is not None:
                stats.refused(holder.scope, "commit" if locked else "early")
            raise QuotaExceeded()


# --- reading and setting limits ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quota:
    scope: str
    id: int
    max_bytes: int | None
    max_files: int | None
    effective_max_bytes: int | None
    effective_max_files: int | None
    used: Usage


async def _holder(db: Database, who: Principal, scope: str, ref: str, *, write: bool) -> int:
    """A project's quota is read by its Reporters and up, a group's by its Maintainers and up
    (404 when invisible, 403 below); setting either is for administrators only, as GitLab's
    storage limits are."""
    if scope == "project":
        access = policy.require_found_project(await policy.project_access(
            db, who, ref, allow_guest_pull=False))
        level, holder_id = access.level, access.project_id
        needed = REPORTER
    else:
        group = policy.require_group_visible(who, await policy.group_access(db, who, ref))
        level, holder_id = group.level, group.group_id
        needed = MAINTAINER
    if write:
        require_admin(who)
    else:
        policy.require_level(who, level, needed)
    return holder_id


async def _quota(conn: asyncpg.Connection, scope: str, holder_id: int,
                 defaults: Defaults) -> Quota:
    limits = await q.limits(conn, scope, holder_id)
    if limits is None:
        raise NotFound("Project" if scope == "project" else "Group")
    holder = QuotaHolder(scope, holder_id, *limits)
    effective = _effective(holder, defaults)
    return Quota(scope, holder_id, limits[0], limits[1], *effective,
                 await q.usage(conn, scope, holder_id))


async def get_quota(db: Database, who: Principal, scope: str, ref: str,
                    defaults: Defaults) -> Quota:
    holder_id = await _holder(db, who, scope, ref, write=False)
    async with db.connection() as conn:
        return await _quota(conn, scope, holder_id, defaults)


async def set_quota(db: Database, who: Principal, scope: str, ref: str, defaults: Defaults, *,
                    max_bytes: int | None, max_files: int | None, given: frozenset[str]
                    ) -> Quota:
    """Only the fields ``given`` change (``None`` removes that limit)."""
    holder_id = await _holder(db, who, scope, ref, write=True)
    async with db.transaction() as conn:
        before = await q.limits(conn, scope, holder_id)
        if before is None:
            raise NotFound("Project" if scope == "project" else "Group")
        new_bytes = max_bytes if "max_bytes" in given else before[0]
        new_files = max_files if "max_files" in given else before[1]
        await q.set_limits(conn, scope, holder_id, new_bytes, new_files)
        await audit.record(
            conn, who, "packages_quota_updated",
            entity_type="Project" if scope == "project" else "Group", entity_id=holder_id,
            message="Changed the storage quota", max_bytes_from=before[0],
            max_files_from=before[1], max_bytes=new_bytes, max_files=new_files)
        return await _quota(conn, scope, holder_id, defaults)


async def statistics(db: Database, who: Principal, project: Project) -> Usage | None:
    """GitLab's project ``statistics`` (``read_statistics``: Reporter and up); None: hidden."""
    if not who.is_admin and project.access_level < REPORTER:
        return None
    async with db.connection() as conn:
        return await q.usage(conn, "project", project.id)


async def refresh_stats(db: Database, stats: QuotaStats, *, max_age: float = 30.0) -> None:
    """The usage figures of /metrics, read at most every ``max_age`` seconds."""
    now = time.monotonic()
    if stats.total is not None and now - stats.read_at < max_age:
        return
    async with db.connection() as conn:
        stats.limited = await q.limited_usage(conn)
        stats.total = await q.total_usage(conn)
    stats.read_at = now
