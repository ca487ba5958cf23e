"""Committing an uploaded object as a package file.

Bytes and rows are kept in a safe order: the object is complete before its row is written, a
commit that fails removes the object, and a row is never visible before its object is. Deletion
runs the other way round: the rows go, and their objects are queued for removal, in one
transaction (the schema's trigger); ``gateway.deletions`` then removes the objects and retries
until they are gone, so neither a crash nor an S3 outage leaves a row without its object or an
object that nothing points to.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import ServiceUnavailable
from gateway.models import Package, PackageFile
from gateway.naming import FileTarget
from gateway.packages.duplicates import DuplicateNotAllowed, duplicate_refused
from gateway.storage import ObjectStore
from gateway.uploads import StoredObject

log = logging.getLogger("gateway.packages")


# Governance's part of a commit (protection rules, quotas, the audit event), run inside the
# commit's transaction under the version's lock, right before the file row is written:
# (conn, project_id, package_id, target, size); raising refuses the commit.
CommitChecks = Callable[[asyncpg.Connection, int, int, FileTarget, int], Awaitable[None]]
# A precondition the commit applies under the version's advisory lock, given the live package
# (None when the version has none yet); it raises to refuse the file (conditional uploads).
CommitCondition = Callable[[asyncpg.Connection, Package | None], Awaitable[None]]


class UploadSwept(ServiceUnavailable):
    """The upload's heartbeat went stale and the sweeper removed it before the commit."""

    def __init__(self) -> None:
        super().__init__("the upload was interrupted, please retry")


async def commit_file(
    db: Database,
    store: ObjectStore,
    project_id: int,
    target: FileTarget,
    stored: StoredObject,
    *,
    status: str | None,
    creator_id: int | None,
    checks: CommitChecks | None = None,
    conditions: Sequence[CommitCondition] = (),
) -> PackageFile:
    """Record an object that is already complete. On any failure the object is deleted.

    One transaction: the advisory lock on (project, name, version), the pending-upload row
    dropped, find or create the package, the duplicate policy again, governance's ``checks``
    (protection rules, quotas, the audit event), the file row. If the pending row is already
    gone, the sweeper took this upload (its heartbeat went stale) and the commit is refused.
    When the connection is lost during COMMIT itself the outcome is unknown: nothing is
    deleted then, because the sweeper sees which it was (a pending row left means the commit
    did not happen).
    """
    outcome_known = True
    try:
        async with db.connection() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                row = await _insert_file(conn, project_id, target, stored, status, creator_id,
                                         checks, conditions)
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
    checks: CommitChecks | None,
    conditions: Sequence[CommitCondition],
) -> PackageFile:
    await q.lock_package_version(conn, project_id, target.package_name, target.package_version)
    if not await q.drop_pending_upload(conn, stored.key):
        raise UploadSwept()
    pkg = await q.find_live_package(
        conn, project_id, target.package_name, target.package_version
    )
    for condition in conditions:
        await condition(conn, pkg)
    wanted = q.STATUS[status] if status is not None else None
    if pkg is None:
        pkg = await q.insert_package(
            conn, project_id, target.package_name, target.package_version,
            wanted if wanted is not None else q.STATUS["default"], creator_id,
        )
    else:
        if await duplicate_refused(conn, project_id, pkg.id, target):
            raise DuplicateNotAllowed()
        if wanted is not None and wanted != pkg.status:
            await q.set_package_status(conn, pkg.id, wanted)
        else:
            await q.touch_package(conn, pkg.id)
    if checks is not None:
        await checks(conn, project_id, pkg.id, target, stored.size)
    d = stored.digests
    return await q.insert_package_file(
        conn, pkg.id, project_id, target.file_name, stored.size,
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


async def discard_object(db: Database, store: ObjectStore, key: str) -> None:
    """An uploaded object that will not be committed (refused after its body arrived): remove
    it and its pending row; if the store fails, the sweeper finishes the job."""
    await _remove_orphan(db, store, key)
