"""Packages and their files: commit an uploaded object, find the file to serve.

Bytes and rows are kept in a safe order: the object is complete before its row is written, a
commit that fails removes the object, and a row is never visible before its object is.
"""

from __future__ import annotations

import contextlib
import logging
import re

import asyncpg

from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import BadRequest, RecordNotFound, ServiceUnavailable
from gateway.naming import FileTarget
from gateway.storage import ObjectStore
from gateway.uploads import StoredObject

log = logging.getLogger("gateway.packages")


class DuplicateNotAllowed(BadRequest):
    def __init__(self) -> None:
        super().__init__("Duplicate package is not allowed")


class UploadSwept(ServiceUnavailable):
    """The upload's heartbeat went stale and the sweeper removed it before the commit."""

    def __init__(self) -> None:
        super().__init__("the upload was interrupted, please retry")


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
    If the pending row is already gone, the sweeper took this upload (its heartbeat went
    stale) and the commit is refused. When the connection is lost during COMMIT itself the
    outcome is unknown: nothing is deleted then, because the sweeper sees which it was (a
    pending row left means the commit did not happen).
    """
    outcome_known = True
    try:
        async with db.connection() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                row = await _insert_file(conn, project_id, target, stored, status, creator_id)
            except BaseException:
                # A dead connection cannot roll back, but its transaction is gone anyway.
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
            outcome_known = False
            await tx.commit()
            return row
    except BaseException:
        if outcome_known:
            await _remove_orphan(db, store, stored.key)
        else:
            log.warning("commit of %s interrupted; the sweeper will settle it", stored.key)
        raise


async def _insert_file(
    conn: asyncpg.Connection,
    project_id: int,
    target: FileTarget,
    stored: StoredObject,
    status: str | None,
    creator_id: int | None,
) -> asyncpg.Record:
    await q.lock_package_version(conn, project_id, target.package_name, target.package_version)
    if not await q.drop_pending_upload(conn, stored.key):
        raise UploadSwept()
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
    return await q.insert_package_file(
        conn, pkg["id"], project_id, target.file_name, stored.size,
        d.md5, d.sha1, d.sha256, stored.key,
    )


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


async def mark_downloaded(db: Database, package_id: int) -> None:
    async with db.connection() as conn:
        await q.mark_downloaded(conn, package_id)
