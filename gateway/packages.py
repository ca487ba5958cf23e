"""Packages and their files: commit an uploaded object, find the file to serve.

Bytes and rows are kept in a safe order: the object is complete before its row is written, a
commit that fails removes the object, and a row is never visible before its object is.
"""

from __future__ import annotations

import logging
import re

import asyncpg

from gateway import auth
from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import BadRequest, RecordNotFound
from gateway.naming import FileTarget
from gateway.storage import ObjectStore
from gateway.uploads import StoredObject

log = logging.getLogger("gateway.packages")


class DuplicateNotAllowed(BadRequest):
    def __init__(self) -> None:
        super().__init__("Duplicate package is not allowed")


def _exception_matches(pattern: str, value: str) -> bool:
    # GitLab pastes the pattern between \A and \z without a group and searches (so a top-level
    # "|" binds loosely), and never matches an empty value.
    if not pattern or not value:
        return False
    try:
        return re.search(r"\A" + pattern + r"\Z", value) is not None
    except re.error:
        return False


def duplicates_allowed(allowed: bool, exception_regex: str, name: str, version: str) -> bool:
    """GitLab's rule: the exception regex inverts the toggle for matching names or versions."""
    match = _exception_matches(exception_regex, name) or _exception_matches(
        exception_regex, version
    )
    return not match if allowed else match


async def _duplicate_refused(conn: asyncpg.Connection, project_id: int, package_id: int,
                             target: FileTarget) -> bool:
    if not await q.live_file_exists(conn, package_id, target.file_name):
        return False
    policy = await q.duplicate_policy(conn, project_id)
    return not duplicates_allowed(
        policy["generic_duplicates_allowed"],
        policy["generic_duplicate_exception_regex"],
        target.package_name,
        target.package_version,
    )


async def check_duplicate(db: Database, project_id: int, target: FileTarget) -> None:
    """The cheap refusal before a byte is streamed; the commit checks again under the lock."""
    async with db.connection() as conn:
        pkg = await q.find_live_package(
            conn, project_id, target.package_name, target.package_version
        )
        if pkg is not None and await _duplicate_refused(conn, project_id, pkg["id"], target):
            raise DuplicateNotAllowed()


async def commit_file(
    db: Database,
    store: ObjectStore,
    project_id: int,
    target: FileTarget,
    stored: StoredObject,
    *,
    status: str | None,
    creator_id: int | None,
) -> asyncpg.Record:
    """Record an object that is already complete. On any failure the object is deleted.

    One transaction: the advisory lock on (project, name, version), find or create the
    package, the duplicate policy again, the file row, and the pending-upload row dropped.
    """
    try:
        async with db.transaction() as conn:
            await q.lock_package_version(
                conn, project_id, target.package_name, target.package_version
            )
            pkg = await q.find_live_package(
                conn, project_id, target.package_name, target.package_version
            )
            wanted = q.STATUS[status] if status is not None else None
            if pkg is None:
                pkg = await q.insert_package(
                    conn, project_id, target.package_name, target.package_version,
                    wanted if wanted is not None else q.STATUS["default"], creator_id,
                )
            else:
                if await _duplicate_refused(conn, project_id, pkg["id"], target):
                    raise DuplicateNotAllowed()
                if wanted is not None and wanted != pkg["status"]:
                    await q.set_package_status(conn, pkg["id"], wanted)
                else:
                    await q.touch_package(conn, pkg["id"])
            d = stored.digests
            row = await q.insert_package_file(
                conn, pkg["id"], project_id, target.file_name, stored.size,
                d.md5, d.sha1, d.sha256, stored.key,
            )
            await q.delete_pending_upload(conn, stored.key)
            return row
    except BaseException:
        await _remove_orphan(db, store, stored.key)
        raise


async def _remove_orphan(db: Database, store: ObjectStore, key: str) -> None:
    """The commit failed: remove the object; if that fails too, the sweeper will."""
    try:
        await store.delete(key)
    except Exception as exc:
        log.warning("could not remove %s after a failed commit, the sweeper will: %s", key, exc)
        return
    try:
        async with db.connection() as conn:
            await q.delete_pending_upload(conn, key)
    except Exception as exc:
        log.warning("could not drop the pending row of %s: %s", key, exc)


async def file_to_serve(db: Database, project_id: int, target: FileTarget) -> asyncpg.Record:
    """The newest installable file of that name (hidden packages included), or GitLab's 404."""
    async with db.connection() as conn:
        row = await q.file_to_serve(
            conn, project_id, target.package_name, target.package_version, target.file_name
        )
    if row is None:
        raise RecordNotFound()
    return row


async def file_for_caller(
    db: Database, who: auth.Principal, project_ref: str, target: FileTarget, *,
    allow_guest_pull: bool,
) -> tuple[auth.ProjectAccess | None, dict | None]:
    """The project as ``who`` sees it and, if they may read its packages, the file to serve.

    One query finds both: a redirect is mostly database round trips (and the pool adds one
    more, its reset, per connection handed back).
    """
    async with db.connection() as conn:
        row, found = await q.file_for_caller(
            conn, project_ref, who.user_id, target.package_name, target.package_version,
            target.file_name,
        )
    if row is None:
        return None, None
    access = auth.abilities(who, row, allow_guest_pull=allow_guest_pull)
    if not (access.read_project and access.read_package):
        return access, None
    return access, found


async def mark_downloaded(db: Database, package_id: int) -> None:
    async with db.connection() as conn:
        await q.mark_downloaded(conn, package_id)
