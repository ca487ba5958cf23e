"""Content-addressed deduplication: identical bytes are stored once.

When an upload is committed and a blob with the same sha256 and size exists, the new file row
points at that blob's object and the object just uploaded is queued for deletion, in the same
transaction. The schema's triggers count the references (0008_blobs.sql): a blob's object is
queued for deletion only with its last reference, transactionally. Commits of one content take
turns on an advisory lock (after the version's lock, in that order everywhere), so two
identical uploads committing at once end as one blob and two rows.
"""

from __future__ import annotations

import asyncpg

from gateway.db import packages as pq
from gateway.naming import FileTarget


async def take_commit_locks(conn: asyncpg.Connection, project_id: int, target: FileTarget,
                            sha256: str) -> None:
    """The version's lock, then the content's, in one statement that reads nothing (each
    statement after it takes its snapshot once both are held, so the file row's insert with
    ``share_content`` sees every blob committed meanwhile). Every commit takes them in this
    order, before any quota's."""
    await pq.lock_package_version_and_content(conn, project_id, target.package_name,
                                              target.package_version, sha256)
