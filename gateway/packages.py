"""Packages and their files: commit an uploaded object, find the file to serve, list and
delete packages, and the namespace's duplicate policy.

Bytes and rows are kept in a safe order: the object is complete before its row is written, a
commit that fails removes the object, and a row is never visible before its object is. Deletion
runs the other way round: the rows go, and their objects are queued for removal, in one
transaction (the schema's trigger); ``gateway.deletions`` then removes the objects and retries
until they are gone, so neither a crash nor an S3 outage leaves a row without its object or an
object that nothing points to.

Deleting is immediate rather than GitLab's "mark pending_destruction, destroy later": the rows
go at once, which has the same visible effect (absent from lists, GET and downloads).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import re2

from gateway.auth import Principal
from gateway.db import packages as q
from gateway.db.identity import groups as group_queries
from gateway.db.pool import Database
from gateway.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    RecordNotFound,
    ServiceUnavailable,
)
from gateway.identity.policy import ProjectAccess, abilities
from gateway.models import Package, PackageFile, PackageVersion, Project
from gateway.naming import FileTarget
from gateway.numbers import id_or_path
from gateway.storage import ObjectStore
from gateway.uploads import StoredObject

log = logging.getLogger("gateway.packages")

EXCEPTION_REGEX_MAX = 255


class DuplicateNotAllowed(BadRequest):
    def __init__(self) -> None:
        super().__init__("Duplicate package is not allowed")


class PackageNotFound(GatewayError):
    """A single GET of a package in ``error`` status: GitLab's bare ``Package not found``."""

    status = 404

    def __init__(self) -> None:
        super().__init__("Package not found")


class InvalidSettings(GatewayError):
    """A model validation failure, in GitLab's shape: ``{"message": {field: [texts]}}``."""

    status = 400

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("400 Bad request")

    def body(self) -> dict[str, Any]:
        return {"message": self.errors}


# GitLab evaluates the exception pattern with RE2 (``Gitlab::UntrustedRegexp``), so we do too:
# the same syntax is accepted (POSIX classes, \pN, \z) and refused (backreferences,
# lookaround), and matching runs in linear time, so a stored pattern cannot stall an upload.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is an answer to the user, not a log line


@functools.lru_cache(maxsize=256)
def _anchored(pattern: str) -> Any:
    # GitLab pastes the pattern between \A and \z without a group: a top-level "|" binds
    # loosely (``a|b`` is "starts with a" or "ends with b"). Kept on purpose.
    return re2.compile(r"\A" + pattern + r"\z", _RE2_OPTIONS)


class UploadSwept(ServiceUnavailable):
    """The upload's heartbeat went stale and the sweeper removed it before the commit."""

    def __init__(self) -> None:
        super().__init__("the upload was interrupted, please retry")


def _exception_matches(pattern: str, value: str) -> bool:
    # UntrustedRegexp#match? never matches an empty value.
    if not value:
        return False
    try:
        return _anchored(pattern).search(value) is not None
    except re2.error:
        log.warning("stored duplicate exception regex does not compile: %r", pattern)
        return False


def exception_regex_errors(pattern: str) -> list[str]:
    """GitLab's validations of ``generic_duplicate_exception_regex``, as its messages."""
    errors = []
    try:
        re2.compile(pattern, _RE2_OPTIONS)
        _anchored(pattern)
    except re2.error as exc:
        errors.append(f"not valid RE2 syntax: {_re2_message(exc)}")
    if len(pattern) > EXCEPTION_REGEX_MAX:
        errors.append(f"is too long (maximum is {EXCEPTION_REGEX_MAX} characters)")
    return errors


def _re2_message(exc: Exception) -> str:
    msg = exc.args[0] if exc.args else str(exc)
    return msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)


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
    allowed, exception_regex = await q.duplicate_policy(conn, project_id)
    return not duplicates_allowed(
        allowed,
        exception_regex,
        target.package_name,
        target.package_version,
    )


async def check_duplicate(db: Database, project_id: int, target: FileTarget) -> None:
    """The cheap refusal before a byte is streamed; the commit checks again under the lock."""
    async with db.connection() as conn:
        pkg = await q.find_live_package(
            conn, project_id, target.package_name, target.package_version
        )
        if pkg is not None and await _duplicate_refused(conn, project_id, pkg.id, target):
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
) -> PackageFile:
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
) -> PackageFile:
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
        if await _duplicate_refused(conn, project_id, pkg.id, target):
            raise DuplicateNotAllowed()
        if wanted is not None and wanted != pkg.status:
            await q.set_package_status(conn, pkg.id, wanted)
        else:
            await q.touch_package(conn, pkg.id)
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


async def file_for_caller(
    db: Database, who: Principal, project_ref: str, target: FileTarget, *,
    allow_guest_pull: bool,
) -> tuple[ProjectAccess | None, dict | None]:
    """The project as ``who`` sees it and, if they may read its packages, the file to serve.

    One query finds both: a redirect is mostly database round trips (and the pool adds one
    more, its reset, per connection handed back).
    """
    ref = id_or_path(project_ref)
    if ref is None:
        return None, None
    async with db.connection() as conn:
        project, found = await q.file_for_caller(
            conn, ref, who.user_id, target.package_name, target.package_version,
            target.file_name,
        )
    if project is None:
        return None, None
    access = abilities(who, project, allow_guest_pull=allow_guest_pull)
    if not access.read_package:
        return access, None
    return access, found


async def mark_downloaded(db: Database, package_id: int) -> None:
    async with db.connection() as conn:
        await q.mark_downloaded(conn, package_id)


# --- the Packages API ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackageQuery:
    """The filters and order of a package list, already validated."""

    package_type: int | None = None
    package_name: str | None = None
    package_version: str | None = None
    status: int | None = None  # None: every displayable status
    order_by: str = "created_at"
    sort: str = "asc"


async def list_packages(
    db: Database, project_ids: list[int], query: PackageQuery, *, limit: int, offset: int
) -> tuple[int, list[Package]]:
    """One page of the packages of these projects, and how many match in all."""
    statuses = (query.status,) if query.status is not None else q.DISPLAYABLE_STATUSES
    async with db.connection() as conn:
        return await q.list_packages(
            conn, project_ids, package_type=query.package_type, name=query.package_name,
            statuses=statuses, version=query.package_version, order_by=query.order_by,
            sort=query.sort, limit=limit, offset=offset,
        )


async def group_projects(
    db: Database, group_id: int, user_id: int | None, *, exclude_subgroups: bool
) -> list[Project]:
    """The projects of a group (and of its subgroups), with the caller's access level."""
    async with db.connection() as conn:
        ids = [group_id] if exclude_subgroups else await group_queries.group_and_descendant_ids(
            conn, group_id
        )
        return await q.group_projects_for_caller(conn, ids, user_id)


async def displayable_package(db: Database, project_id: int, package_id: int) -> Package:
    """The package as the Packages API finds it by id (hidden ones are not found)."""
    async with db.connection() as conn:
        pkg = await q.find_package(conn, project_id, package_id)
    if pkg is None or pkg.status not in q.DISPLAYABLE_STATUSES:
        raise RecordNotFound()
    return pkg


async def package_details(
    db: Database, project_id: int, package_id: int
) -> tuple[Package, list[PackageVersion]]:
    """A package for a single GET, and its other versions; GitLab's two 404s otherwise."""
    pkg = await displayable_package(db, project_id, package_id)
    if pkg.status not in q.DETAILED_STATUSES:
        raise PackageNotFound()
    async with db.connection() as conn:
        return pkg, await q.other_versions(conn, pkg)


async def list_package_files(
    db: Database, project_id: int, package_id: int, *, order_by: str, sort: str,
    limit: int, offset: int,
) -> tuple[int, list[PackageFile]]:
    await displayable_package(db, project_id, package_id)
    async with db.connection() as conn:
        return await q.list_package_files(
            conn, package_id, order_by=order_by, sort=sort, limit=limit, offset=offset
        )


async def _delete_whole_package(conn: asyncpg.Connection, pkg: Package) -> bool:
    # The upload commit's lock: a file is never added to a package that is being deleted.
    await q.lock_package_version(conn, pkg.project_id, pkg.name, pkg.version)
    return await q.delete_package(conn, pkg.id)


async def delete_package(db: Database, project_id: int, package_id: int) -> None:
    """Remove the package and its files; their objects are queued for deletion."""
    pkg = await displayable_package(db, project_id, package_id)
    async with db.transaction() as conn:
        if not await _delete_whole_package(conn, pkg):
            raise RecordNotFound()  # deleted meanwhile


async def delete_package_file(
    db: Database, project_id: int, package_id: int, file_id: int
) -> None:
    """Remove one file (the package stays, even empty); its object is queued for deletion."""
    await displayable_package(db, project_id, package_id)
    async with db.transaction() as conn:
        if not await q.delete_package_file(conn, package_id, file_id):
            raise NotFound()


async def delete_file_by_path(db: Database, project_id: int, target: FileTarget) -> None:
    """``DELETE`` on a generic file URL: every file of that name in that version."""
    async with db.transaction() as conn:
        pkg = await q.find_installable_package(
            conn, project_id, target.package_name, target.package_version
        )
        if pkg is None:
            raise RecordNotFound()
        await q.lock_package_version(conn, project_id, pkg.name, pkg.version)
        if not await q.delete_files_named(conn, pkg.id, target.file_name):
            raise RecordNotFound()


async def delete_version_by_path(
    db: Database, project_id: int, package_name: str, package_version: str
) -> None:
    """``DELETE`` on ``…/generic/:package_name/:package_version``: the whole version."""
    async with db.transaction() as conn:
        pkg = await q.find_installable_package(conn, project_id, package_name, package_version)
        if pkg is None or not await _delete_whole_package(conn, pkg):
            raise RecordNotFound()


# --- namespace package settings -------------------------------------------------------------


async def package_settings(db: Database, group_id: int) -> dict[str, Any]:
    async with db.connection() as conn:
        row = await q.package_settings(conn, group_id)
    if row is None:
        raise NotFound("Group")
    return row


async def update_package_settings(
    db: Database, group_id: int, *, allowed: bool | None, exception_regex: str | None
) -> dict[str, Any]:
    """Change the fields given; an invalid regex changes nothing (GitLab's 400 shape)."""
    if exception_regex is not None and (errors := exception_regex_errors(exception_regex)):
        raise InvalidSettings({"generic_duplicate_exception_regex": errors})
    async with db.connection() as conn:
        row = await q.update_package_settings(conn, group_id, allowed, exception_regex)
    if row is None:
        raise NotFound("Group")
    return row
