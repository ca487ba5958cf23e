"""Named SQL for packages, package files, pending uploads and the object deletion queue."""

from __future__ import annotations

import asyncpg

from gateway.db import identity

Conn = asyncpg.Connection

# GitLab's integer statuses.
STATUS = {"default": 0, "hidden": 1, "processing": 2, "error": 3, "pending_destruction": 4,
          "deprecated": 5}
STATUS_NAME = {v: k for k, v in STATUS.items()}
INSTALLABLE_STATUSES = (0, 1, 5)
GENERIC = 7

# --- package creation ---------------------------------------------------------------------

# Serializes everything that creates or adds to one (project, name, version); held to the end
# of the transaction, so two uploads into a new version never race to create it.
LOCK_PACKAGE_VERSION = """
SELECT pg_advisory_xact_lock(hashtextextended($1::bigint::text || '/' || $2 || '/' || $3, 7))
"""

FIND_LIVE_PACKAGE = """
SELECT * FROM packages
WHERE project_id = $1 AND name = $2 AND version = $3 AND package_type = 7 AND status <> 4
"""

INSERT_PACKAGE = """
INSERT INTO packages (project_id, name, version, status, creator_id)
VALUES ($1, $2, $3, $4, $5)
RETURNING *
"""

SET_PACKAGE_STATUS = "UPDATE packages SET status = $2, updated_at = now() WHERE id = $1"
TOUCH_PACKAGE = "UPDATE packages SET updated_at = now() WHERE id = $1"

LIVE_FILE_EXISTS = """
SELECT EXISTS (SELECT 1 FROM package_files WHERE package_id = $1 AND file_name = $2 AND status <> 1)
"""

INSERT_PACKAGE_FILE = """
INSERT INTO package_files (package_id, project_id, file_name, size, file_md5, file_sha1,
                           file_sha256, object_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""

# The settings of the project's immediate namespace decide on duplicates, as on GitLab.
DUPLICATE_POLICY = """
SELECT n.generic_duplicates_allowed, n.generic_duplicate_exception_regex
FROM projects p JOIN namespaces n ON n.id = p.namespace_id
WHERE p.id = $1
"""


async def lock_package_version(conn: Conn, project_id: int, name: str, version: str) -> None:
    await conn.execute(LOCK_PACKAGE_VERSION, project_id, name, version)


async def find_live_package(
    conn: Conn, project_id: int, name: str, version: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_LIVE_PACKAGE, project_id, name, version)


async def insert_package(
    conn: Conn, project_id: int, name: str, version: str, status: int, creator_id: int | None
) -> asyncpg.Record:
    return await conn.fetchrow(INSERT_PACKAGE, project_id, name, version, status, creator_id)


async def set_package_status(conn: Conn, package_id: int, status: int) -> None:
    await conn.execute(SET_PACKAGE_STATUS, package_id, status)


async def touch_package(conn: Conn, package_id: int) -> None:
    await conn.execute(TOUCH_PACKAGE, package_id)


async def live_file_exists(conn: Conn, package_id: int, file_name: str) -> bool:
    return await conn.fetchval(LIVE_FILE_EXISTS, package_id, file_name)


async def insert_package_file(
    conn: Conn, package_id: int, project_id: int, file_name: str, size: int,
    md5: str, sha1: str, sha256: str, object_key: str,
) -> asyncpg.Record:
    return await conn.fetchrow(
        INSERT_PACKAGE_FILE, package_id, project_id, file_name, size, md5, sha1, sha256, object_key
    )


async def duplicate_policy(conn: Conn, project_id: int) -> asyncpg.Record:
    return await conn.fetchrow(DUPLICATE_POLICY, project_id)


# --- download -----------------------------------------------------------------------------

# The newest installable file of that name in an installable package (hidden included).
_FILE_TO_SERVE = """
SELECT f.id, f.package_id, f.file_name, f.size, f.file_md5, f.file_sha1, f.file_sha256,
       f.object_key, f.created_at,
       -- GitLab sets last_downloaded_at on every download; once a minute is enough here and
       -- keeps a write off the hot path of busy files.
       (p.last_downloaded_at IS NULL
        OR p.last_downloaded_at < now() - interval '1 minute') AS needs_download_mark
FROM packages p JOIN package_files f ON f.package_id = p.id
WHERE p.project_id = {project} AND p.name = {name} AND p.version = {version}
  AND p.package_type = 7 AND p.status = ANY({statuses}::smallint[])
  AND f.file_name = {file_name} AND f.status = 0
ORDER BY f.id DESC
LIMIT 1
"""
FILE_TO_SERVE = _FILE_TO_SERVE.format(
    project="$1", name="$2", version="$3", statuses="$4", file_name="$5"
)
_FILE_COLUMNS = ("id", "package_id", "file_name", "size", "file_md5", "file_sha1", "file_sha256",
                 "object_key", "created_at", "needs_download_mark")

# A download's lookups in one round trip: the project as the caller sees it (identity's query)
# and, beside it, the file to serve, its columns prefixed with "file__".
_FILE_FOR_CALLER = """
SELECT pc.*, {columns}
FROM ({project}) pc
LEFT JOIN LATERAL ({file}) f ON true
"""


def _file_for_caller(project_query: str, first: int) -> str:
    n = [f"${i}" for i in range(first, first + 4)]
    return _FILE_FOR_CALLER.format(
        columns=", ".join(f"f.{c} AS file__{c}" for c in _FILE_COLUMNS),
        project=project_query,
        file=_FILE_TO_SERVE.format(project="pc.id", name=n[0], version=n[1], statuses=n[2],
                                   file_name=n[3]),
    )


FILE_FOR_CALLER_BY_ID = _file_for_caller(identity.PROJECT_FOR_CALLER_BY_ID, 3)
FILE_FOR_CALLER_BY_PATH = _file_for_caller(identity.PROJECT_FOR_CALLER_BY_PATH, 4)

MARK_DOWNLOADED = "UPDATE packages SET last_downloaded_at = now() WHERE id = $1"


async def file_to_serve(
    conn: Conn, project_id: int, name: str, version: str, file_name: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        FILE_TO_SERVE, project_id, name, version, list(INSTALLABLE_STATUSES), file_name
    )


async def file_for_caller(
    conn: Conn, ref: str, user_id: int | None, name: str, version: str, file_name: str
) -> tuple[asyncpg.Record | None, dict | None]:
    """The project ``ref`` as identity.project_for_caller finds it, and the file to serve in
    it (None when there is none), in one round trip."""
    uid = user_id or 0
    statuses = list(INSTALLABLE_STATUSES)
    if ref.lstrip("-").isdigit():
        pid = int(ref)
        if not -(2**63) <= pid < 2**63:
            return None, None
        row = await conn.fetchrow(
            FILE_FOR_CALLER_BY_ID, pid, uid, name, version, statuses, file_name
        )
    elif "/" in ref:
        namespace, _, path = ref.rpartition("/")
        row = await conn.fetchrow(
            FILE_FOR_CALLER_BY_PATH, namespace, uid, path, name, version, statuses, file_name
        )
    else:
        return None, None
    if row is None:
        return None, None
    if row["file__id"] is None:
        return row, None
    return row, {c: row[f"file__{c}"] for c in _FILE_COLUMNS}


async def mark_downloaded(conn: Conn, package_id: int) -> None:
    await conn.execute(MARK_DOWNLOADED, package_id)


# --- pending uploads ----------------------------------------------------------------------

INSERT_PENDING_UPLOAD = """
INSERT INTO pending_uploads (object_key, instance, project_id) VALUES ($1, $2, $3)
"""
SET_PENDING_UPLOAD_ID = """
UPDATE pending_uploads SET upload_id = $2, heartbeat_at = now() WHERE object_key = $1
"""
HEARTBEAT_PENDING_UPLOAD = "UPDATE pending_uploads SET heartbeat_at = now() WHERE object_key = $1"
DELETE_PENDING_UPLOAD = "DELETE FROM pending_uploads WHERE object_key = $1"


async def insert_pending_upload(conn: Conn, key: str, instance: str, project_id: int) -> None:
    await conn.execute(INSERT_PENDING_UPLOAD, key, instance, project_id)


async def set_pending_upload_id(conn: Conn, key: str, upload_id: str) -> None:
    await conn.execute(SET_PENDING_UPLOAD_ID, key, upload_id)


async def heartbeat_pending_upload(conn: Conn, key: str) -> None:
    await conn.execute(HEARTBEAT_PENDING_UPLOAD, key)


async def delete_pending_upload(conn: Conn, key: str) -> None:
    await conn.execute(DELETE_PENDING_UPLOAD, key)
