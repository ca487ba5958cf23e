"""Synthetic metadata through the real schema, filled with ``generate_series``.

The default sizes are the issue's: 10,000 projects in 1,000 groups, 2 million packages, 10
million files, a few CI-heavy projects with 500,000 files in 250,000 versions each (one of them
with a package of 20,000 files), uploads in progress and a backlog of a million object
deletions. ``Sizes.scaled`` shrinks all of it for development runs and the suite's smoke test.

Ids are assigned arithmetically, so every row's parent is known without a join: package ``j``
of the big projects belongs to big project ``(j - 1) % big_projects``, the other packages are
spread round-robin over the other projects, and files round-robin over their packages. Rows are
inserted with foreign-key triggers off (``session_replication_role = replica``) and the big
tables' indexes dropped meanwhile and rebuilt from their own definitions afterwards, which is
minutes instead of hours and leaves exactly the schema the migrations made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from gateway.identity import limits, seed
from gateway.identity.tokens import issue_personal_access_token

MAINTAINER = 40


@dataclass(frozen=True, slots=True)
class Sizes:
    groups: int = 1_000
    projects: int = 10_000
    packages: int = 2_000_000
    files: int = 10_000_000
    big_projects: int = 4
    big_project_files: int = 500_000
    files_per_big_package: int = 2
    big_package_files: int = 20_000  # one package of the first big project
    pending: int = 10_000
    stale_pending: int = 200
    deletions: int = 1_000_000
    due_deletions: int = 100_000

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        """Every count times ``scale``, with floors that keep each part of the picture."""
        def n(value: int, floor: int) -> int:
            return max(floor, round(value * scale))

        d = cls()
        big_files = n(d.big_project_files, 40)
        return cls(
            groups=n(d.groups, 3),
            projects=n(d.projects, d.big_projects + 3),
            packages=n(d.packages, 4 * big_files // 2 + 60),
            files=n(d.files, 4 * big_files + 300),
            big_projects=d.big_projects,
            big_project_files=big_files,
            files_per_big_package=d.files_per_big_package,
            big_package_files=min(n(d.big_package_files, 30), big_files // 2),
            pending=n(d.pending, 20),
            stale_pending=n(d.stale_pending, 5),
            deletions=n(d.deletions, 100),
            due_deletions=n(d.due_deletions, 10),
        )

    @property
    def big_packages(self) -> int:
        """Packages of all big projects together."""
        return self.big_projects * self.big_project_files // self.files_per_big_package

    @property
    def normal_packages(self) -> int:
        return self.packages - self.big_packages

    @property
    def normal_files(self) -> int:
        return self.files - self.big_projects * self.big_project_files


@dataclass(frozen=True, slots=True)
class Filled:
    """What the measurements need to know about the fill."""

    sizes: Sizes
    token: str  # a Maintainer of every group (not an administrator)
    user_id: int
    big_project_id: int  # the first big project (its group holds it and normal projects)
    normal_project_id: int
    big_group_id: int
    normal_group_id: int
    big_package_id: int  # the package of the first big project with many files
    duplicate_project_id: int  # a big project in a group that refuses duplicates
    seconds: float


# --- the SQL ------------------------------------------------------------------------------------

_GROUPS = """
INSERT INTO namespaces (kind, name, path, full_path, visibility)
SELECT 'group', 'Group ' || i, 'g' || i, 'g' || i, 'private' FROM generate_series(1, $1) i
"""
_MEMBERS = """
INSERT INTO group_members (group_id, user_id, access_level)
SELECT id, $1, $2 FROM namespaces WHERE kind = 'group' AND path ~ '^g[0-9]+$'
"""
# Project i (1-based) lives in group ((i - 1) % groups) + 1: the big projects 1..4 land in
# groups 1..4, beside normal projects.
_PROJECTS = """
INSERT INTO projects (id, namespace_id, name, path, visibility)
SELECT $3::bigint + i, n.id, 'p' || i, 'p' || i, 'private'
FROM generate_series(1, $1) i JOIN namespaces n ON n.path = 'g' || ((i - 1) % $2 + 1)
"""
# Packages in id order are created over two years, interleaved across projects as CI does;
# 1 in 100 is hidden.
_PACKAGES = """
INSERT INTO packages (id, project_id, name, version, status, created_at, updated_at)
SELECT j, $2::bigint + CASE WHEN j <= $3 THEN (j - 1) % $4 + 1
                   ELSE $4 + 1 + (j - $3 - 1) % ($5 - $4) END,
       'pkg-' || (j % 37), j::text, CASE WHEN j % 100 = 0 THEN 1 ELSE 0 END,
       now() - make_interval(secs => ($1 - j)::float8 * 63072000.0 / $1),
       now() - make_interval(secs => ($1 - j)::float8 * 63072000.0 / $1)
FROM generate_series(1, $1::bigint) j
"""
# Files round-robin over a range of packages; the key layout is the gateway's.
_FILES = """
INSERT INTO package_files (package_id, project_id, file_name, size, file_md5, file_sha1,
                           file_sha256, object_key, created_at, updated_at)
SELECT pk, $6::bigint + CASE WHEN pk <= $7 THEN (pk - 1) % $8 + 1
                             ELSE $8 + 1 + (pk - $7 - 1) % ($9 - $8) END,
       $5::text || ((i - 1) / $3) || '.bin', 1 + (i * 7919) % 100000000,
       h, h || substr(h, 1, 8), h || h, 'packages/' || substr(h, 1, 2) || '/' || h,
       now(), now()
FROM (SELECT i, $2::bigint + (i - 1) % $3 AS pk, md5($4::text || i) AS h
      FROM generate_series(1, $1::bigint) i) s
"""
_PENDING = """
INSERT INTO pending_uploads (object_key, upload_id, instance, project_id, started_at,
                             heartbeat_at)
SELECT 'packages/' || substr(h, 1, 2) || '/' || h, 'upload-' || i, 'bench-' || (i % 8), $3,
       now() - interval '10 minutes',
       CASE WHEN i <= $2 THEN now() - interval '3 hours'
            ELSE now() - (i % 200) * interval '1 second' END
FROM (SELECT i, md5('pending' || i) AS h FROM generate_series(1, $1) i) s
"""
# The backlog: a share due now (a project was just deleted: one next_attempt_at for all), the
# rest failed before and postponed by the worker's backoff (S3 was down).
_DELETIONS = """
INSERT INTO object_deletions (object_key, enqueued_at, attempts, next_attempt_at, last_error)
SELECT 'packages/' || substr(h, 1, 2) || '/' || h, now() - interval '1 hour',
       CASE WHEN i <= $2 THEN 0 ELSE 1 + i % 9 END,
       CASE WHEN i <= $2 THEN now() - interval '1 minute'
            ELSE now() + interval '1 hour' + (i % 86400) * interval '1 second' END,
       CASE WHEN i <= $2 THEN NULL ELSE 'StorageUnavailable: object storage is unavailable' END
FROM (SELECT i, md5('deleted' || i) AS h FROM generate_series(1, $1) i) s
"""
_BIG_TABLES = ("packages", "package_files", "object_deletions", "pending_uploads")


async def _index_definitions(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(name, CREATE INDEX …) of the big tables' indexes that back no constraint."""
    rows = await conn.fetch("""
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = 'public' AND i.tablename = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
    """, list(_BIG_TABLES))
    return [(r["indexname"], r["indexdef"]) for r in rows]


async def fill(conn: asyncpg.Connection, sizes: Sizes,
               log: Callable[[str], None] = lambda _: None) -> Filled:
    """Fill an empty, migrated database; returns what the measurements need."""
    start = time.perf_counter()
    s = sizes
    await seed.ensure_admin(conn)
    user = await seed.add_user(conn, "bench")
    issued = await issue_personal_access_token(conn, user.id, "bench", ["api"],
                                               limits.max_token_expiry(365))
    await conn.execute(_GROUPS, s.groups)
    await conn.execute(_MEMBERS, user.id, MAINTAINER)
    base = await conn.fetchval("SELECT coalesce(max(id), 0) FROM projects")
    await conn.execute(_PROJECTS, s.projects, s.groups, base)
    await conn.execute("SELECT setval('projects_id_seq', (SELECT max(id) FROM projects))")
    # The first big project's group refuses duplicates (the duplicate check's case).
    dup_group = await conn.fetchval(
        "SELECT namespace_id FROM projects WHERE id = $1", base + 2)
    await conn.execute("UPDATE namespaces SET generic_duplicates_allowed = false WHERE id = $1",
                       dup_group)

    indexes = await _index_definitions(conn)
    for name, _ in indexes:
        await conn.execute(f'DROP INDEX "{name}"')
    await conn.execute("SET session_replication_role = replica")
    try:
        t = time.perf_counter()
        await conn.execute(_PACKAGES, s.packages, base, s.big_packages, s.big_projects,
                           s.projects)
        log(f"{s.packages:,} packages in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        args = (base, s.big_packages, s.big_projects, s.projects)
        await conn.execute(_FILES, s.big_projects * s.big_project_files - s.big_package_files,
                           1, s.big_packages, "b", "file-", *args)
        await conn.execute(_FILES, s.big_package_files, 1, 1, "x", "part-", *args)
        await conn.execute(_FILES, s.normal_files, s.big_packages + 1, s.normal_packages, "n",
                           "file-", *args)
        log(f"{s.files:,} files in {time.perf_counter() - t:.0f} s")
        await conn.execute(_PENDING, s.pending, s.stale_pending, base + 1)
        await conn.execute(_DELETIONS, s.deletions, s.due_deletions)
    finally:
        await conn.execute("RESET session_replication_role")
    for seq, table in (("packages_id_seq", "packages"),):
        await conn.execute(f"SELECT setval('{seq}', (SELECT max(id) FROM {table}))")
    t = time.perf_counter()
    for _, definition in indexes:
        await conn.execute(definition)
    log(f"{len(indexes)} indexes rebuilt in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    # VACUUM sets the visibility map (index-only scans), ANALYZE the planner's statistics.
    for table in (*_BIG_TABLES, "projects", "namespaces", "group_members", "users"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    log(f"vacuum and analyze in {time.perf_counter() - t:.0f} s")
    big_group, normal_group = await conn.fetch(
        "SELECT namespace_id FROM projects WHERE id = ANY($1::bigint[]) ORDER BY id",
        [base + 1, base + s.projects])
    return Filled(
        sizes=s, token=issued.token, user_id=user.id, big_project_id=base + 1,
        normal_project_id=base + s.projects, big_group_id=big_group["namespace_id"],
        normal_group_id=normal_group["namespace_id"], big_package_id=1,
        duplicate_project_id=base + 2, seconds=time.perf_counter() - start,
    )
