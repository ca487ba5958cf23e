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


async def shared_object(conn: asyncpg.Connection, key: str, sha256: str, size: int) -> str:
    """The object key a new file row with this content should point at: an existing blob's
    (then ``key``, the object just uploaded, is queued for deletion) or ``key`` itself."""
    await bq.lock_content(conn, sha256)
    existing = await bq.live_blob_for_content(conn, sha256, size)
    if existing is None or existing == key:
        return key
    await bq.queue_object_deletion(conn, key)
    return existing
