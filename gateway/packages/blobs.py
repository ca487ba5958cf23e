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

from gateway.db import blobs as bq


async def hold_content(conn: asyncpg.Connection, sha256: str) -> None:
    """Take the content's lock, alone (a statement's snapshot is taken before it waits, so
    the look for identical bytes goes in the next statement: the file row's insert with
    ``share_content``, which points the row at an existing blob and queues the object just
    uploaded for deletion)."""
    await bq.lock_content(conn, sha256)
