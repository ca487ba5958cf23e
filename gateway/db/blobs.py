"""Named SQL for blobs: one stored object per distinct content, shared by file rows.

Reference counts are kept by the schema's triggers on ``package_files`` (0008_blobs.sql); the
queries here find a blob to share and hold it while a new reference is written.
"""

from __future__ import annotations

import asyncpg

Conn = asyncpg.Connection

# Serializes the commits of one content (by sha256) for this transaction, so two identical
# uploads committing at once end as one blob. Always taken with the version's lock, after it
# (gateway.db.packages.LOCK_PACKAGE_VERSION_AND_CONTENT).
LOCK_CONTENT = "SELECT pg_advisory_xact_lock(hashtextextended('blob/' || $1, 7))"

LIVE_BLOB = "SELECT object_key FROM blobs WHERE object_key = $1 AND refcount > 0 FOR UPDATE"

# The files holding that content, one per project, the caller's own project first: where a
# deploy by checksum may take its bytes from (the caller must be allowed to read one of them).
FILES_WITH_CONTENT = """
SELECT * FROM (
    SELECT DISTINCT ON (f.project_id) f.project_id, f.object_key, f.size, f.file_md5,
           f.file_sha1, f.file_sha256
    FROM blobs b
    JOIN package_files f ON f.object_key = b.object_key
    JOIN packages p ON p.id = f.package_id
    WHERE b.sha256 = $1 AND b.refcount > 0 AND f.status = 0
      AND p.status = ANY($3::smallint[])
    ORDER BY f.project_id, f.id DESC
) c
ORDER BY (c.project_id = $2) DESC, c.project_id
LIMIT $4
"""


async def live_blob(conn: Conn, object_key: str) -> bool:
    return await conn.fetchval(LIVE_BLOB, object_key) is not None


async def files_with_content(conn: Conn, sha256: str, project_id: int,
                             statuses: tuple[int, ...], limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(FILES_WITH_CONTENT, sha256, project_id, list(statuses), limit)
