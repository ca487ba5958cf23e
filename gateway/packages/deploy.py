"""Deploy by checksum (Artifactory's ``X-Checksum-Deploy``): a ``PUT`` with an empty body and
the sha256 of bytes the server already holds links those bytes into a new file.

The bytes must be in a file the caller may read (their own project's or another's whose
packages they may read), so nobody learns or obtains another project's content by its digest:
a digest the caller cannot read is answered exactly as one the server has never seen, GitLab's
404. The new file goes through the upload's rules (duplicates, conditional writes) under the
version's advisory lock, and shares the blob (its reference counted by the schema).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.auth import Principal
from gateway.db import blobs as bq
from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import BadRequest, RecordNotFound
from gateway.hashing import Digests
from gateway.identity import policy
from gateway.models import PackageFile
from gateway.naming import FileTarget
from gateway.packages import blobs
from gateway.packages.commit import (
    CommitChecks,
    CommitCondition,
    file_written,
    package_for_file,
)
from gateway.packages.digests import Declared, verify

# Projects looked at for a readable copy of the content (the caller's own first).
_CANDIDATES = 20


@dataclass(frozen=True, slots=True)
class Source:
    """Stored bytes a deploy links to."""

    object_key: str
    size: int
    digests: Digests


def deploy_digest(flag: str | None, declared: Sequence[Declared],
                  content_length: int | None) -> Declared | None:
    """The sha256 to deploy by, or None for an ordinary upload; checked before any body."""
    if flag is None or flag.strip().lower() == "false":
        return None
    if flag.strip().lower() != "true":
        raise BadRequest("X-Checksum-Deploy is invalid")
    sha256 = next((d for d in declared if d.header == "X-Checksum-Sha256"), None)
    if sha256 is None:
        raise BadRequest("X-Checksum-Deploy needs X-Checksum-Sha256")
    if content_length != 0:
        raise BadRequest("X-Checksum-Deploy needs an empty body (Content-Length: 0)")
    return sha256


async def _readable_source(db: Database, who: Principal, own: policy.ProjectAccess,
                           sha256: str, *, allow_guest_pull: bool) -> Source:
    async with db.connection() as conn:
        rows = await bq.files_with_content(conn, sha256, own.project_id,
                                           q.INSTALLABLE_STATUSES, _CANDIDATES)
    for row in rows:
        if row["project_id"] == own.project_id:
            readable = own.read_package
        else:
            access = await policy.project_access(db, who, str(row["project_id"]),
                                                 allow_guest_pull=allow_guest_pull)
            readable = access is not None and access.read_package
        if readable:
            return Source(row["object_key"], row["size"],
                          Digests(row["file_md5"], row["file_sha1"], row["file_sha256"]))
    raise RecordNotFound()


async def deploy(
    db: Database, who: Principal, own: policy.ProjectAccess, target: FileTarget,
    declared: Sequence[Declared], by: Declared, *, status: str | None,
    checks: CommitChecks | None, conditions: Sequence[CommitCondition], allow_guest_pull: bool,
) -> PackageFile:
    """Link readable bytes with the sha256 ``by`` into ``target``; every other declared digest
    must match them too. 404 (GitLab's body) when there are none. The commit's ``conditions``
    and governance's ``checks`` apply as to an upload."""
    source = await _readable_source(db, who, own, by.value.hex(),
                                    allow_guest_pull=allow_guest_pull)
    verify(declared, source.digests)
    d = source.digests
    async with db.transaction() as conn:
        # The content's lock with the version's, before any quota's, as every commit.
        await blobs.take_commit_locks(conn, own.project_id, target, d.sha256)
        pkg, new_status = await package_for_file(conn, own.project_id, target, status,
                                                 who.user_id, conditions)
        event = None
        if checks is not None:
            event = await checks(conn, own.project_id, pkg.id, target, source.size, None)
        if not await bq.live_blob(conn, source.object_key):
            raise RecordNotFound()  # its last reference was deleted meanwhile
        row = await q.insert_file_into_package(
            conn, pkg.id, own.project_id, target.file_name, source.size,
            d.md5, d.sha1, d.sha256, source.object_key, new_status=new_status,
            audit=event.args() if event is not None else None,
        )
        return file_written(row, event)
