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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg

from gateway.db import packages as q
from gateway.db.governance import UploadFacts
from gateway.db.pool import Database
from gateway.errors import ServiceUnavailable
from gateway.governance import audit
from gateway.models import AuditEvent, Package, PackageFile, UploadTarget
from gateway.naming import FileTarget
from gateway.packages import blobs
from gateway.packages.duplicates import DuplicateNotAllowed, duplicate_refused
from gateway.storage import ObjectStore
from gateway.uploads import StoredObject

log = logging.getLogger("gateway.packages")


class CommitChecks(Protocol):
    """Governance's part of a commit (protection rules, quotas, the audit event), run inside
    the commit's transaction under the version's lock, right before the file row is written;
    raising refuses the commit. ``facts_args`` are the role and the rule check the commit's
    look under the lock reads governance's facts with (``gateway.db.governance.UPLOAD_FACTS``);
    the call gets them, and returns the audit event that the file row's statement writes."""

    def facts_args(self) -> tuple[int | None, bool]: ...

    async def __call__(self, conn: asyncpg.Connection, project_id: int, package_id: int,
                       target: FileTarget, size: int, facts: UploadFacts | None
                       ) -> audit.Pending | None: ...


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
    # Round trips of a commit (with BEGIN and COMMIT around them, five in all for a file into
    # an existing package, six for a new package): the version's and the content's locks,
    # which must come first in a statement that reads nothing (a statement's snapshot is taken
    # before it starts, so what a lock inside it waited for would stay unseen); one look that
    # also drops the pending row and brings the duplicate policy and governance's facts
    # (protection rules, quota holders: no query of their own); the new package, if any
    # (``checks`` need its id); one write of the file row that also finds identical bytes,
    # touches the package and writes the audit event. ``conditions`` add their own, and a
    # quota with a limit its lock and its sum.
    name, version = target.package_name, target.package_version
    d = stored.digests
    # Identical bytes already stored: the row shares that blob, and this object is dropped
    # (the content's lock is taken with the version's, before any quota's: the order of
    # every commit, deploys included).
    await blobs.take_commit_locks(conn, project_id, target, d.sha256)
    facts = None
    if checks is None:
        found = await q.upload_target_dropping_pending(conn, project_id, name, version,
                                                       target.file_name, stored.key)
    else:
        found, facts = await q.upload_target_and_facts_dropping_pending(
            conn, project_id, name, version, target.file_name, stored.key, *checks.facts_args())
    if not found.pending_dropped:
        raise UploadSwept()
    pkg, new_status = await _package_for(conn, project_id, target, found, status, creator_id,
                                         conditions)
    event = None
    if checks is not None:
        event = await checks(conn, project_id, pkg.id, target, stored.size, facts)
    row = await q.insert_file_into_package(
        conn, pkg.id, project_id, target.file_name, stored.size,
        d.md5, d.sha1, d.sha256, stored.key, new_status=new_status, share_content=True,
        audit=event.args() if event is not None else None,
    )
    return file_written(row, event)


def file_written(row: Mapping[str, Any], event: audit.Pending | None) -> PackageFile:
    """The file row ``insert_file_into_package`` returned; its audit event is logged."""
    if event is not None:
        event.written(AuditEvent(
            id=row["audit_id"], entity_type=event.entity_type, entity_id=event.entity_id,
            event_name=event.event_name, author_id=event.author_id,
            author_name=event.author_name, entity_path=row["audit_entity_path"],
            target_type=event.target_type, target_id=event.target_id,
            target_details=event.target_details, ip_address=event.ip_address,
            created_at=row["audit_created_at"]))
    return PackageFile.from_row(row)


async def _package_for(
    conn: asyncpg.Connection,
    project_id: int,
    target: FileTarget,
    found: UploadTarget,
    status: str | None,
    creator_id: int | None,
    conditions: Sequence[CommitCondition],
) -> tuple[Package, int | None]:
    """The live package the file goes into (made if the version has none) once the commit's
    conditions and the duplicate rule let it in, and the status the file's write sets on it."""
    pkg = found.package
    for condition in conditions:
        await condition(conn, pkg)
    wanted = q.STATUS[status] if status is not None else None
    if pkg is None:
        pkg = await q.insert_package(
            conn, project_id, target.package_name, target.package_version,
            wanted if wanted is not None else q.STATUS["default"], creator_id,
        )
        return pkg, None
    if duplicate_refused(found, target):
        raise DuplicateNotAllowed()
    return pkg, wanted if wanted is not None and wanted != pkg.status else None


async def package_for_file(
    conn: asyncpg.Connection,
    project_id: int,
    target: FileTarget,
    status: str | None,
    creator_id: int | None,
    conditions: Sequence[CommitCondition],
) -> tuple[Package, int | None]:
    """``_package_for`` for a file with no pending upload (deploy by checksum); the caller
    holds the version's advisory lock and passes the status to ``insert_file_into_package``."""
    found = await q.upload_target(conn, project_id, target.package_name,
                                  target.package_version, target.file_name)
    return await _package_for(conn, project_id, target, found, status, creator_id, conditions)


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
