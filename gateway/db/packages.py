"""Named SQL for packages, package files, pending uploads and the object deletion queue."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from gateway.db import blobs, governance
from gateway.db.identity import projects as identity_projects
from gateway.enums import PACKAGE_STATUS as STATUS
from gateway.enums import PACKAGE_STATUS_NAME as STATUS_NAME
from gateway.enums import PACKAGE_TYPE_NAME, PACKAGE_TYPES
from gateway.models import Package, PackageFile, PackageVersion, Project, UploadTarget
from gateway.numbers import INT64_MAX

Conn = asyncpg.Connection

__all__ = ["PACKAGE_TYPES", "PACKAGE_TYPE_NAME", "STATUS", "STATUS_NAME"]

INSTALLABLE_STATUSES = (0, 1, 5)
GENERIC = 7

# --- package creation ---------------------------------------------------------------------

# Serializes everything that creates or adds to one (project, name, version); held to the end
# of the transaction, so two uploads into a new version never race to create it.
LOCK_PACKAGE_VERSION = """
SELECT pg_advisory_xact_lock(hashtextextended($1::bigint::text || '/' || $2 || '/' || $3, 7))
"""

# The version's lock, then the content's (gateway.db.blobs.LOCK_CONTENT: $4 the sha256), in
# one round trip and in the order every commit takes them (the subquery, kept apart by OFFSET
# 0, yields its row before the outer list is evaluated). The statement reads nothing, so the
# rule still holds that each statement after it takes its snapshot once both locks are held.
LOCK_PACKAGE_VERSION_AND_CONTENT = (
    blobs.LOCK_CONTENT.replace("$1", "$4")
    + " FROM (" + LOCK_PACKAGE_VERSION.strip() + " OFFSET 0) version"
)

FIND_LIVE_PACKAGE = """
SELECT * FROM packages
WHERE project_id = $1 AND name = $2 AND version = $3 AND package_type = 7 AND status <> 4
"""

INSERT_PACKAGE = """
INSERT INTO packages (project_id, name, version, status, creator_id)
VALUES ($1, $2, $3, $4, $5)
RETURNING *
"""


# The digest of the file a download of that name would serve (conditional uploads).
NEWEST_FILE_SHA256 = """
SELECT file_sha256 FROM package_files WHERE package_id = $1 AND file_name = $2 AND status = 0
ORDER BY id DESC LIMIT 1
"""

INSERT_PACKAGE_FILE = """
INSERT INTO package_files (package_id, project_id, file_name, size, file_md5, file_sha1,
                           file_sha256, object_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""


# What an upload into (project, name, version) needs to know, in one round trip: the live
# package (its columns, all NULL when there is none), whether a live file of that name is in
# it, and the duplicate policy of the project's namespace (GitLab: the immediate namespace).
_UPLOAD_TARGET = """
SELECT p.*,
       EXISTS (SELECT 1 FROM package_files f
               WHERE f.package_id = p.id AND f.file_name = $4 AND f.status <> 1) AS file_exists,
       n.generic_duplicates_allowed, n.generic_duplicate_exception_regex
FROM projects pr
JOIN namespaces n ON n.id = pr.namespace_id
LEFT JOIN packages p ON p.project_id = pr.id AND p.name = $2 AND p.version = $3
                    AND p.package_type = 7 AND p.status <> 4
WHERE pr.id = $1
"""
UPLOAD_TARGET = _UPLOAD_TARGET
# The check before the body is read also records the pending upload (the same round trip).
UPLOAD_TARGET_RECORDING_PENDING = """
WITH pending AS (
    INSERT INTO pending_uploads (object_key, instance, project_id) VALUES ($5, $6, $1)
)
""" + _UPLOAD_TARGET
# The commit's look, under the version's lock, also drops the pending row; pending_dropped is
# false when the row was already gone (the sweeper took the upload).
UPLOAD_TARGET_DROPPING_PENDING = """
WITH dropped AS (DELETE FROM pending_uploads WHERE object_key = $5 RETURNING 1)
SELECT EXISTS (SELECT 1 FROM dropped) AS pending_dropped, t.*
FROM (""" + _UPLOAD_TARGET + """) t
"""

# The check before the body, recording the pending row, with governance's facts beside it
# ($7 the role, $8 whether rules apply): the one round trip of an upload before its body.
UPLOAD_TARGET_AND_FACTS_RECORDING_PENDING = """
WITH pending AS (
    INSERT INTO pending_uploads (object_key, instance, project_id) VALUES ($5, $6, $1)
)
SELECT t.*, facts.*
FROM (""" + _UPLOAD_TARGET + """) t,
     (""" + governance.upload_facts_row(level=7, check=8) + """) facts
"""
# The same look bringing governance's facts too (UPLOAD_FACTS: $2 is the package name there as
# here; $6 the role, $7 whether rules apply): under the version's lock they are read once, for
# the commit's checks, instead of in a round trip of their own.
UPLOAD_TARGET_DROPPING_PENDING_WITH_FACTS = """
WITH dropped AS (DELETE FROM pending_uploads WHERE object_key = $5 RETURNING 1)
SELECT EXISTS (SELECT 1 FROM dropped) AS pending_dropped, t.*, facts.*
FROM (""" + _UPLOAD_TARGET + """) t,
     (""" + governance.upload_facts_row(level=6, check=7) + """) facts
"""

# A file into an existing package, which is touched (and given a new status, $9 when not
# NULL) by the same statement.
INSERT_FILE_INTO_PACKAGE = """
WITH touched AS (
    UPDATE packages SET status = coalesce($9::smallint, status), updated_at = now()
    WHERE id = $1
){audit}
INSERT INTO package_files (package_id, project_id, file_name, size, file_md5, file_sha1,
                           file_sha256, object_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *{audit_columns}
"""
# The same for a new object ($8) whose content may be stored already: a live blob of that
# sha256 and size, locked (a delete of its last reference waits for this transaction, or came
# first and left nothing to find), is what the row points at, and the new object is queued for
# deletion. The caller holds the content's lock (gateway.db.blobs.LOCK_CONTENT), taken by a
# statement before this one (LOCK_PACKAGE_VERSION_AND_CONTENT), whose snapshot therefore sees
# every commit it waited for. The blob's reference count is the trigger's (0008_blobs.sql).
INSERT_FILE_SHARING_CONTENT = """
WITH shared AS (
    SELECT object_key FROM blobs WHERE sha256 = $7 AND size = $4 AND refcount > 0
    ORDER BY id LIMIT 1
    FOR UPDATE
), queued AS (
    INSERT INTO object_deletions (object_key)
    SELECT $8::text FROM shared WHERE shared.object_key <> $8::text
), touched AS (
    UPDATE packages SET status = coalesce($9::smallint, status), updated_at = now()
    WHERE id = $1
){audit}
INSERT INTO package_files (package_id, project_id, file_name, size, file_md5, file_sha1,
                           file_sha256, object_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce((SELECT object_key FROM shared), $8::text))
RETURNING *{audit_columns}
"""
# The audit event of the change ($10 to $19: INSERT_AUDIT_EVENT's parameters), written by the
# file's statement: the event commits or rolls back with the row, in no round trip of its own.
_AUDIT_CTE = ", audited AS (" + re.sub(
    r"\$(\d+)", lambda m: f"${int(m[1]) + 9}", governance.INSERT_AUDIT_EVENT) + ")"
_AUDIT_COLUMNS = (", (SELECT id FROM audited) AS audit_id,"
                  " (SELECT entity_path FROM audited) AS audit_entity_path,"
                  " (SELECT created_at FROM audited) AS audit_created_at")


def _file_insert(template: str, *, audited: bool) -> str:
    return template.format(audit=_AUDIT_CTE if audited else "",
                           audit_columns=_AUDIT_COLUMNS if audited else "")


_FILE_INSERTS = {
    (sharing, audited): _file_insert(
        INSERT_FILE_SHARING_CONTENT if sharing else INSERT_FILE_INTO_PACKAGE, audited=audited)
    for sharing in (False, True) for audited in (False, True)
}


def _upload_target(row: asyncpg.Record | None) -> UploadTarget:
    if row is None:
        # The project is gone: nothing to be a duplicate of (the insert will fail on it).
        return UploadTarget(None, False, True, "", False)
    return UploadTarget(
        Package.from_row(row) if row["id"] is not None else None,
        row["file_exists"],
        row["generic_duplicates_allowed"],
        row["generic_duplicate_exception_regex"],
        row.get("pending_dropped", True),
    )


async def upload_target(conn: Conn, project_id: int, name: str, version: str,
                        file_name: str) -> UploadTarget:
    return _upload_target(await conn.fetchrow(UPLOAD_TARGET, project_id, name, version,
                                              file_name))


async def upload_target_recording_pending(
    conn: Conn, project_id: int, name: str, version: str, file_name: str, key: str,
    instance: str,
) -> UploadTarget:
    return _upload_target(await conn.fetchrow(
        UPLOAD_TARGET_RECORDING_PENDING, project_id, name, version, file_name, key, instance))


async def upload_target_dropping_pending(
    conn: Conn, project_id: int, name: str, version: str, file_name: str, key: str,
) -> UploadTarget:
    return _upload_target(await conn.fetchrow(
        UPLOAD_TARGET_DROPPING_PENDING, project_id, name, version, file_name, key))


async def upload_target_and_facts_recording_pending(
    conn: Conn, project_id: int, name: str, version: str, file_name: str, key: str,
    instance: str, level: int | None, check_rules: bool,
) -> tuple[UploadTarget, governance.UploadFacts]:
    """``upload_target_recording_pending`` and ``governance.upload_facts`` in one round trip."""
    row = await conn.fetchrow(UPLOAD_TARGET_AND_FACTS_RECORDING_PENDING, project_id, name,
                              version, file_name, key, instance, level, check_rules)
    return _upload_target(row), governance.upload_facts_from_row(row)


async def upload_target_and_facts_dropping_pending(
    conn: Conn, project_id: int, name: str, version: str, file_name: str, key: str,
    level: int | None, check_rules: bool,
) -> tuple[UploadTarget, governance.UploadFacts]:
    """``upload_target_dropping_pending`` and ``governance.upload_facts`` in one round trip."""
    row = await conn.fetchrow(UPLOAD_TARGET_DROPPING_PENDING_WITH_FACTS, project_id, name,
                              version, file_name, key, level, check_rules)
    return _upload_target(row), governance.upload_facts_from_row(row)


async def insert_file_into_package(
    conn: Conn, package_id: int, project_id: int, file_name: str, size: int,
    md5: str, sha1: str, sha256: str, object_key: str, *, new_status: int | None,
    share_content: bool = False, audit: tuple[Any, ...] | None = None,
) -> asyncpg.Record:
    """The file row (``PackageFile``'s columns) and, with ``audit`` (INSERT_AUDIT_EVENT's
    values), the event's ``audit_id``, ``audit_entity_path`` and ``audit_created_at``;
    ``share_content``: the row may point at an existing blob (INSERT_FILE_SHARING_CONTENT)."""
    return await conn.fetchrow(
        _FILE_INSERTS[(share_content, audit is not None)], package_id, project_id, file_name,
        size, md5, sha1, sha256, object_key, new_status, *(audit or ()))


async def lock_package_version(conn: Conn, project_id: int, name: str, version: str) -> None:
    await conn.execute(LOCK_PACKAGE_VERSION, project_id, name, version)


async def lock_package_version_and_content(conn: Conn, project_id: int, name: str,
                                           version: str, sha256: str) -> None:
    await conn.execute(LOCK_PACKAGE_VERSION_AND_CONTENT, project_id, name, version, sha256)


async def find_live_package(
    conn: Conn, project_id: int, name: str, version: str
) -> Package | None:
    return Package.from_optional(await conn.fetchrow(FIND_LIVE_PACKAGE, project_id, name,
                                                     version))


async def insert_package(
    conn: Conn, project_id: int, name: str, version: str, status: int, creator_id: int | None
) -> Package:
    return Package.from_row(
        await conn.fetchrow(INSERT_PACKAGE, project_id, name, version, status, creator_id))


async def newest_file_sha256(conn: Conn, package_id: int, file_name: str) -> str | None:
    return await conn.fetchval(NEWEST_FILE_SHA256, package_id, file_name)


async def insert_package_file(
    conn: Conn, package_id: int, project_id: int, file_name: str, size: int,
    md5: str, sha1: str, sha256: str, object_key: str,
) -> PackageFile:
    return PackageFile.from_row(await conn.fetchrow(
        INSERT_PACKAGE_FILE, package_id, project_id, file_name, size, md5, sha1, sha256, object_key
    ))


# --- download -----------------------------------------------------------------------------

# The newest installable file of that name in an installable package (hidden included).
_FILE_TO_SERVE = """
SELECT f.id, f.package_id, f.file_name, f.size, f.file_md5, f.file_sha1, f.file_sha256,
       f.object_key, f.created_at,
       -- GitLab sets last_downloaded_at on every download; once a minute is enough here and
       -- keeps a write off the hot path of busy files. The file's own mark (retention's "not
       -- downloaded for N days") is written at most once a day.
       (p.last_downloaded_at IS NULL
        OR p.last_downloaded_at < now() - interval '1 minute'
        OR f.last_downloaded_at IS NULL
        OR f.last_downloaded_at < now() - interval '1 day') AS needs_download_mark
FROM packages p JOIN package_files f ON f.package_id = p.id
WHERE p.project_id = {project} AND p.name = {name} AND p.version = {version}
  AND p.package_type = 7 AND p.status = ANY({statuses}::smallint[])
  AND f.file_name = {file_name} AND f.status = 0
ORDER BY f.id DESC
LIMIT 1
"""
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


FILE_FOR_CALLER_BY_ID = _file_for_caller(identity_projects.PROJECT_FOR_CALLER_BY_ID, 3)
FILE_FOR_CALLER_BY_PATH = _file_for_caller(identity_projects.PROJECT_FOR_CALLER_BY_PATH, 4)

MARK_DOWNLOADED = """
WITH file AS (
    UPDATE package_files SET last_downloaded_at = now()
    WHERE id = $2 AND (last_downloaded_at IS NULL OR last_downloaded_at < now() - interval '1 day')
)
UPDATE packages SET last_downloaded_at = now() WHERE id = $1
"""

# What the @latest alias may stand for: default (status 0) generic versions holding the file.
_DEFAULT_VERSIONS_WITH_FILE = """
FROM packages p JOIN package_files f ON f.package_id = p.id
WHERE p.project_id = $1 AND p.name = $2 AND p.package_type = 7 AND p.status = 0
  AND f.file_name = $3 AND f.status = 0
"""
NEWEST_DEFAULT_VERSION_WITH_FILE = (
    "SELECT p.version " + _DEFAULT_VERSIONS_WITH_FILE
    + "ORDER BY f.created_at DESC, f.id DESC LIMIT 1"
)
DEFAULT_VERSIONS_WITH_FILE = "SELECT DISTINCT p.version " + _DEFAULT_VERSIONS_WITH_FILE


async def newest_default_version_with_file(conn: Conn, project_id: int, name: str,
                                           file_name: str) -> str | None:
    return await conn.fetchval(NEWEST_DEFAULT_VERSION_WITH_FILE, project_id, name, file_name)


async def default_versions_with_file(conn: Conn, project_id: int, name: str,
                                     file_name: str) -> list[str]:
    rows = await conn.fetch(DEFAULT_VERSIONS_WITH_FILE, project_id, name, file_name)
    return [r["version"] for r in rows]


async def file_for_caller(
    conn: Conn, ref: int | str, user_id: int | None, name: str, version: str, file_name: str
) -> tuple[Project | None, dict | None]:
    """The project ``ref`` (an id or a full path) as identity's ``for_caller`` finds it, and
    the file to serve in it (None when there is none), in one round trip."""
    uid = user_id or 0
    statuses = list(INSTALLABLE_STATUSES)
    if isinstance(ref, int):
        row = await conn.fetchrow(
            FILE_FOR_CALLER_BY_ID, ref, uid, name, version, statuses, file_name
        )
    else:
        namespace, _, path = ref.rpartition("/")
        row = await conn.fetchrow(
            FILE_FOR_CALLER_BY_PATH, namespace, uid, path, name, version, statuses, file_name
        )
    if row is None:
        return None, None
    project = Project.from_row(row)
    if row["file__id"] is None:
        return project, None
    return project, {c: row[f"file__{c}"] for c in _FILE_COLUMNS}


async def mark_downloaded(conn: Conn, package_id: int, file_id: int) -> None:
    await conn.execute(MARK_DOWNLOADED, package_id, file_id)


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


# --- Packages API: lists ------------------------------------------------------------------

# Lists leave terraform modules out unless asked for them.
TERRAFORM_MODULE = 12
# Shown in lists without a status filter, and found by id (GitLab's `displayable`).
DISPLAYABLE_STATUSES = (0, 3, 5)
# A single GET answers these; the others are 404 (GitLab's `detailed_info`).
DETAILED_STATUSES = (0, 5)

# Sort columns by the names GitLab accepts. Names and versions compare byte-wise (COLLATE "C")
# so pages do not depend on the server's locale; `id` in the same direction breaks ties.
_ORDER_COLUMNS = {
    "created_at": "p.created_at",
    "name": 'p.name COLLATE "C"',
    "version": 'p.version COLLATE "C"',
    "type": "p.package_type",
    "project_path": 'pr.path COLLATE "C"',
}

# The filters of every package list, on packages ``p`` ($2 type, $3 name pattern, $4 statuses,
# $5 version).
_LIST_FILTERS = """
  AND (($2::smallint IS NULL AND p.package_type <> 12) OR p.package_type = $2)
  AND ($3::text IS NULL OR p.name ILIKE $3)
  AND p.status = ANY($4::smallint[])
  AND ($5::text IS NULL OR p.version = $5)
"""

# Counting stops where GitLab stops showing the count (X-Total above 10,000 is left out), so a
# project with a million packages costs at most 10,001 index entries, not a million.
COUNT_PACKAGES = """
SELECT count(*) FROM (
    SELECT 1 FROM packages p WHERE p.project_id = ANY($1::bigint[])
""" + _LIST_FILTERS + """
    LIMIT $6
) counted
"""

# Every form of a list page ends alike: the page's rows and project paths, read by the ids and
# sort keys its CTE ``page`` found.
_PAGE_ROWS = """
SELECT p.*, n.full_path || '/' || pr.path AS project_full_path
FROM page
JOIN packages p ON p.id = page.id
JOIN projects pr ON pr.id = p.project_id
JOIN namespaces n ON n.id = pr.namespace_id
ORDER BY page.k {direction}, page.id {direction}
"""

# One page in two steps. First the ids and sort keys of the page, taken from each project's own
# index range (the lateral join): at most $6 rows per project (offset + limit), so a first page
# reads about 20 index entries per project, however many packages it holds; they are merged,
# cut to the page, and only then are the page's rows and project paths read.
_PAGE = """
WITH page AS (
    SELECT l.id, l.k
    FROM projects pr
    CROSS JOIN LATERAL (
        SELECT p.id, {key} AS k FROM packages p
        WHERE p.project_id = pr.id {after}
""" + _LIST_FILTERS + """
        ORDER BY {inner_order}
        LIMIT $6
    ) l
    WHERE pr.id = ANY($1::bigint[])
    ORDER BY l.k {direction}, l.id {direction}
    LIMIT $7 OFFSET $8
)
""" + _PAGE_ROWS

# The same page without the lateral join, for deep offsets into groups of many projects, where
# offset + limit rows from each project would be more than all the group's rows.
_PAGE_FLAT = """
WITH page AS (
    SELECT p.id, {key} AS k
    FROM packages p JOIN projects pr ON pr.id = p.project_id
    WHERE p.project_id = ANY($1::bigint[]) {after}
""" + _LIST_FILTERS + """
      AND $6::bigint IS NOT NULL  -- the lateral's bound, unused: both forms take one argument list
    ORDER BY k {direction}, p.id {direction}
    LIMIT $7 OFFSET $8
)
""" + _PAGE_ROWS
# Past this many rows read (projects x (offset + limit)) the flat form is used.
_LATERAL_ROWS_MAX = 200_000

# A project's own list (one project): its index range read in order, so an offset page skips
# offset entries of the index alone, where the lateral form sorts offset + limit rows again
# (a page at GitLab's offset limit: 50,000). The project is ``($1)[1]``, an expression the
# index condition takes, so all three forms take the same arguments; its path is the same on
# every row, so that order is by id.
_PAGE_ONE = """
WITH page AS (
    SELECT p.id, {key} AS k
    FROM packages p
    WHERE p.project_id = ($1::bigint[])[1] {after}
""" + _LIST_FILTERS + """
      AND $6::bigint IS NOT NULL  -- the lateral's bound, unused
    ORDER BY {inner_order}
    LIMIT $7 OFFSET $8
)
""" + _PAGE_ROWS


def _like_pattern(term: str) -> str:
    """``%term%`` with LIKE's wildcards in the term taken literally (GitLab's fuzzy search)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def package_page_query(order_by: str, sort: str, *, keyset: bool = False,
                       flat: bool = False, one: bool = False) -> str:
    """The named query of one list page: ``order_by`` one of GitLab's columns (or ``id`` for
    keyset pages, which add ``p.id > $9``, ``<`` when descending); ``one`` for the list of a
    single project, ``flat`` for deep pages of many."""
    if sort not in ("asc", "desc"):
        raise ValueError(f"unknown sort {sort}")
    direction = sort.upper()
    if keyset:
        key, inner = "p.id", f"p.id {direction}"
        after = f"AND p.id {'>' if sort == 'asc' else '<'} $9"
    elif order_by in _ORDER_COLUMNS:
        key = _ORDER_COLUMNS[order_by]
        # Within one project every row has the same path: its own order is by id.
        inner = (f"p.id {direction}" if order_by == "project_path"
                 else f"{key} {direction}, p.id {direction}")
        after = ""
    else:
        raise ValueError(f"unknown order {order_by}")
    if one:
        if order_by == "project_path":
            key = "p.id"
        return _PAGE_ONE.format(key=key, inner_order=inner, direction=direction, after=after)
    template = _PAGE_FLAT if flat else _PAGE
    return template.format(key=key, inner_order=inner, direction=direction, after=after)


async def list_packages(
    conn: Conn, project_ids: list[int], *, package_type: int | None, name: str | None,
    statuses: tuple[int, ...], version: str | None, order_by: str, sort: str,
    limit: int, offset: int, count_limit: int,
) -> tuple[int, list[Package]]:
    """One page of the packages of these projects, and how many match, counted up to
    ``count_limit``."""
    pattern = _like_pattern(name) if name is not None else None
    args = (project_ids, package_type, pattern, list(statuses), version)
    total = await conn.fetchval(COUNT_PACKAGES, *args, count_limit)
    flat = len(project_ids) * (offset + limit) > _LATERAL_ROWS_MAX
    query = package_page_query(order_by, sort, flat=flat, one=len(project_ids) == 1)
    rows = await conn.fetch(query, *args, offset + limit, limit, offset)
    return total, [Package.from_row(r) for r in rows]


async def list_packages_after(
    conn: Conn, project_ids: list[int], *, package_type: int | None, name: str | None,
    statuses: tuple[int, ...], version: str | None, sort: str, limit: int, after: int | None,
) -> list[Package]:
    """A keyset page: up to ``limit`` packages in id order after (before, descending) the id
    ``after``; one more than asked tells the caller there is a next page."""
    if after is None:
        after = 0 if sort == "asc" else INT64_MAX
    pattern = _like_pattern(name) if name is not None else None
    rows = await conn.fetch(
        package_page_query("id", sort, keyset=True), project_ids, package_type, pattern,
        list(statuses), version, limit, limit, 0, after,
    )
    return [Package.from_row(r) for r in rows]


# Every project in these namespaces with what auth needs to judge the caller's access (the
# columns of identity's projects.for_caller): namespace ancestry and the effective access level.
GROUP_PROJECTS_FOR_CALLER = """
WITH RECURSIVE chain AS (
    SELECT pr.id AS project_id, n.id AS ns_id, n.parent_id
    FROM projects pr JOIN namespaces n ON n.id = pr.namespace_id
    WHERE pr.namespace_id = ANY($1::bigint[])
    UNION ALL
    SELECT c.project_id, n.id, n.parent_id FROM chain c JOIN namespaces n ON n.id = c.parent_id
)
SELECT pr.*, n.full_path || '/' || pr.path AS path_with_namespace,
       n.kind AS namespace_kind, n.owner_id AS namespace_owner_id,
       ARRAY(SELECT c.ns_id FROM chain c WHERE c.project_id = pr.id) AS ancestor_ids,
       COALESCE(GREATEST(
           (SELECT access_level FROM project_members m
             WHERE m.project_id = pr.id AND m.user_id = $2
               AND (m.expires_at IS NULL OR m.expires_at > current_date)),
           (SELECT max(access_level) FROM group_members g
             WHERE g.group_id IN (SELECT c.ns_id FROM chain c WHERE c.project_id = pr.id)
               AND g.user_id = $2
               AND (g.expires_at IS NULL OR g.expires_at > current_date)),
           CASE WHEN n.kind = 'user' AND n.owner_id = $2 THEN 50 END
       ), 0) AS access_level
FROM projects pr JOIN namespaces n ON n.id = pr.namespace_id
WHERE pr.namespace_id = ANY($1::bigint[])
"""


async def group_projects_for_caller(
    conn: Conn, namespace_ids: list[int], user_id: int | None
) -> list[Project]:
    rows = await conn.fetch(GROUP_PROJECTS_FOR_CALLER, namespace_ids, user_id or 0)
    return [Project.from_row(r) for r in rows]


# --- Packages API: one package, its files ---------------------------------------------------

FIND_PACKAGE = "SELECT * FROM packages WHERE id = $1 AND project_id = $2"

# The other displayable versions of a package (GitLab's `versions` in a single GET).
OTHER_VERSIONS = """
SELECT id, version, created_at FROM packages
WHERE project_id = $1 AND name = $2 AND package_type = $3 AND version <> $4
  AND status = ANY($5::smallint[])
ORDER BY version COLLATE "C", id
"""

_FILE_ORDER_COLUMNS = {"id": "id", "created_at": "created_at",
                       "file_name": 'file_name COLLATE "C"'}

# Counted up to a bound, as the package lists are.
COUNT_PACKAGE_FILES = """
SELECT count(*) FROM (
    SELECT 1 FROM package_files WHERE package_id = $1 AND status = 0 LIMIT $2
) counted
"""
# The page's ids first, then its rows: skipping offset entries reads the index alone
# (package_files_package_id_idx covers id order), not offset rows of the table.
_LIST_PACKAGE_FILES = """
WITH page AS (
    SELECT id, {column} AS k FROM package_files WHERE package_id = $1 AND status = 0
    ORDER BY {column} {direction}, id {direction}
    LIMIT $2 OFFSET $3
)
SELECT f.* FROM page JOIN package_files f ON f.id = page.id
ORDER BY page.k {direction}, page.id {direction}
"""
_PACKAGE_FILES_AFTER = """
SELECT * FROM package_files WHERE package_id = $1 AND status = 0 AND id {op} $3
ORDER BY id {direction}
LIMIT $2
"""
PACKAGE_FILES_AFTER = _PACKAGE_FILES_AFTER.format(op=">", direction="ASC")
PACKAGE_FILES_BEFORE = _PACKAGE_FILES_AFTER.format(op="<", direction="DESC")


def package_files_page_query(order_by: str, sort: str) -> str:
    """The named query of one offset page of a package's files."""
    if order_by not in _FILE_ORDER_COLUMNS or sort not in ("asc", "desc"):
        raise ValueError(f"unknown order {order_by} {sort}")
    return _LIST_PACKAGE_FILES.format(column=_FILE_ORDER_COLUMNS[order_by],
                                      direction=sort.upper())


async def find_package(conn: Conn, project_id: int, package_id: int) -> Package | None:
    return Package.from_optional(await conn.fetchrow(FIND_PACKAGE, package_id, project_id))


async def other_versions(conn: Conn, pkg: Package) -> list[PackageVersion]:
    rows = await conn.fetch(
        OTHER_VERSIONS, pkg.project_id, pkg.name, pkg.package_type, pkg.version,
        list(DISPLAYABLE_STATUSES),
    )
    return [PackageVersion.from_row(r) for r in rows]


async def list_package_files(
    conn: Conn, package_id: int, *, order_by: str, sort: str, limit: int, offset: int,
    count_limit: int,
) -> tuple[int, list[PackageFile]]:
    query = package_files_page_query(order_by, sort)
    total = await conn.fetchval(COUNT_PACKAGE_FILES, package_id, count_limit)
    return total, [PackageFile.from_row(r) for r in await conn.fetch(query, package_id, limit,
                                                                      offset)]


async def list_package_files_after(
    conn: Conn, package_id: int, *, sort: str, limit: int, after: int | None
) -> list[PackageFile]:
    """A keyset page of a package's files in id order (see ``list_packages_after``)."""
    if sort == "asc":
        query, bound = PACKAGE_FILES_AFTER, 0 if after is None else after
    else:
        query, bound = PACKAGE_FILES_BEFORE, INT64_MAX if after is None else after
    return [PackageFile.from_row(r) for r in await conn.fetch(query, package_id, limit, bound)]


# --- deletion -------------------------------------------------------------------------------
# Deleting a package_files row (directly or by cascade) queues its object in object_deletions
# in the same transaction (the schema's trigger); the deletion worker empties the queue.

DELETE_PACKAGE = "DELETE FROM packages WHERE id = $1 RETURNING id"
DELETE_PACKAGE_FILE = """
DELETE FROM package_files WHERE id = $1 AND package_id = $2 AND status = 0 RETURNING id
"""
DELETE_FILES_NAMED = """
DELETE FROM package_files WHERE package_id = $1 AND file_name = $2 RETURNING id
"""

# The package a generic path names, for deletion: any status a download could find.
FIND_INSTALLABLE_PACKAGE = """
SELECT * FROM packages
WHERE project_id = $1 AND name = $2 AND version = $3 AND package_type = 7
  AND status = ANY($4::smallint[])
"""


async def delete_package(conn: Conn, package_id: int) -> bool:
    return await conn.fetchval(DELETE_PACKAGE, package_id) is not None


async def delete_package_file(conn: Conn, package_id: int, file_id: int) -> bool:
    return await conn.fetchval(DELETE_PACKAGE_FILE, file_id, package_id) is not None


async def delete_files_named(conn: Conn, package_id: int, file_name: str) -> int:
    return len(await conn.fetch(DELETE_FILES_NAMED, package_id, file_name))


async def find_installable_package(
    conn: Conn, project_id: int, name: str, version: str
) -> Package | None:
    return Package.from_optional(await conn.fetchrow(
        FIND_INSTALLABLE_PACKAGE, project_id, name, version, list(INSTALLABLE_STATUSES)
    ))


# --- the object deletion queue ---------------------------------------------------------------

# Due entries, locked for this transaction; other instances skip them rather than wait.
CLAIM_OBJECT_DELETIONS = """
SELECT id, object_key, attempts FROM object_deletions
WHERE next_attempt_at <= now()
ORDER BY next_attempt_at, id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
FINISH_OBJECT_DELETION = "DELETE FROM object_deletions WHERE id = $1"
POSTPONE_OBJECT_DELETION = """
UPDATE object_deletions
SET attempts = attempts + 1, last_error = $3,
    next_attempt_at = now() + make_interval(secs => $2)
WHERE id = $1
"""
# Seconds until the next entry is due (None when the queue is empty).
NEXT_OBJECT_DELETION_DUE = """
SELECT GREATEST(0, extract(epoch FROM min(next_attempt_at) - now()))::float8 FROM object_deletions
"""


async def claim_object_deletions(conn: Conn, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(CLAIM_OBJECT_DELETIONS, limit)


async def finish_object_deletion(conn: Conn, deletion_id: int) -> None:
    await conn.execute(FINISH_OBJECT_DELETION, deletion_id)


async def postpone_object_deletion(
    conn: Conn, deletion_id: int, delay: float, error: str
) -> None:
    await conn.execute(POSTPONE_OBJECT_DELETION, deletion_id, delay, error[:1000])


async def next_object_deletion_due(conn: Conn) -> float | None:
    return await conn.fetchval(NEXT_OBJECT_DELETION_DUE)


# --- namespace package settings ---------------------------------------------------------------

PACKAGE_SETTINGS = """
SELECT generic_duplicates_allowed, generic_duplicate_exception_regex
FROM namespaces WHERE id = $1
"""
UPDATE_PACKAGE_SETTINGS = """
UPDATE namespaces
SET generic_duplicates_allowed = COALESCE($2, generic_duplicates_allowed),
    generic_duplicate_exception_regex = COALESCE($3, generic_duplicate_exception_regex)
WHERE id = $1
RETURNING generic_duplicates_allowed, generic_duplicate_exception_regex
"""


async def package_settings(conn: Conn, namespace_id: int) -> dict[str, object] | None:
    row = await conn.fetchrow(PACKAGE_SETTINGS, namespace_id)
    return None if row is None else dict(row)


async def update_package_settings(
    conn: Conn, namespace_id: int, allowed: bool | None, exception_regex: str | None
) -> dict[str, object] | None:
    row = await conn.fetchrow(UPDATE_PACKAGE_SETTINGS, namespace_id, allowed, exception_regex)
    return None if row is None else dict(row)
# --- sweeping stale pending uploads -------------------------------------------------------

# One sweeper at a time across all instances: each sweep step (one row) takes this lock for its
# transaction, so nothing outlives the transaction (PgBouncer's transaction pooling may hand
# the next one to another server connection).
SWEEP_LOCK_KEY = 0x73776565  # "swee"
TRY_SWEEP_LOCK = "SELECT pg_try_advisory_xact_lock($1)"

STALE_PENDING_UPLOADS = """
SELECT object_key, upload_id, instance, project_id, started_at, heartbeat_at
FROM pending_uploads
WHERE heartbeat_at < now() - make_interval(secs => $1)
ORDER BY heartbeat_at
LIMIT $2
"""

# Held until the sweep of this row commits: a commit of the same upload that reaches its
# "drop the pending row" step waits, then finds the row gone and rolls back.
CLAIM_STALE_PENDING_UPLOAD = """
SELECT object_key, upload_id FROM pending_uploads
WHERE object_key = $1 AND heartbeat_at < now() - make_interval(secs => $2)
FOR UPDATE SKIP LOCKED
"""

OBJECT_KEY_IS_COMMITTED = "SELECT EXISTS (SELECT 1 FROM package_files WHERE object_key = $1)"

DROP_PENDING_UPLOAD = "DELETE FROM pending_uploads WHERE object_key = $1 RETURNING object_key"


async def try_sweep_lock(conn: Conn) -> bool:
    """Take the sweep lock until this transaction ends; False when another holds it."""
    return await conn.fetchval(TRY_SWEEP_LOCK, SWEEP_LOCK_KEY)


async def stale_pending_uploads(
    conn: Conn, stale_seconds: float, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(STALE_PENDING_UPLOADS, float(stale_seconds), limit)


async def claim_stale_pending_upload(
    conn: Conn, key: str, stale_seconds: float
) -> asyncpg.Record | None:
    return await conn.fetchrow(CLAIM_STALE_PENDING_UPLOAD, key, float(stale_seconds))


async def object_key_is_committed(conn: Conn, key: str) -> bool:
    return await conn.fetchval(OBJECT_KEY_IS_COMMITTED, key)


async def drop_pending_upload(conn: Conn, key: str) -> bool:
    """Delete the pending row; False when it was already gone (swept)."""
    return await conn.fetchval(DROP_PENDING_UPLOAD, key) is not None


FIND_PACKAGE_FILE = "SELECT * FROM package_files WHERE id = $1 AND package_id = $2 AND status = 0"


async def find_package_file(conn: Conn, package_id: int, file_id: int) -> PackageFile | None:
    return PackageFile.from_optional(await conn.fetchrow(FIND_PACKAGE_FILE, file_id, package_id))
