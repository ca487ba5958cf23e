"""Named SQL for users, tokens, namespaces, projects and memberships."""

from __future__ import annotations

import asyncpg

Conn = asyncpg.Connection

# --- tokens -------------------------------------------------------------------------------

FIND_PERSONAL_ACCESS_TOKEN = """
SELECT t.id AS token_id, t.token_digest, t.scopes, t.expires_at, t.revoked,
       t.expires_at IS NOT NULL AND t.expires_at <= current_date AS expired,
       u.id AS user_id, u.username, u.is_admin, u.state, u.external, u.bot
FROM personal_access_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_digest = $1
"""

FIND_DEPLOY_TOKEN = """
SELECT id AS token_id, token_digest, project_id, group_id, scopes, username
FROM deploy_tokens
WHERE token_digest = $1 AND NOT revoked AND (expires_at IS NULL OR expires_at > now())
"""

FIND_JOB_TOKEN = """
SELECT j.id AS token_id, j.token_digest, j.project_id AS job_project_id,
       u.id AS user_id, u.username, u.is_admin, u.state, u.external, u.bot
FROM job_tokens j JOIN users u ON u.id = j.user_id
WHERE j.token_digest = $1 AND j.expires_at > now()
"""

INSERT_PERSONAL_ACCESS_TOKEN = """
INSERT INTO personal_access_tokens (user_id, name, token_digest, scopes, expires_at, description)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *
"""

INSERT_JOB_TOKEN = """
INSERT INTO job_tokens (project_id, user_id, token_digest, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING *
"""


async def find_personal_access_token(conn: Conn, digest: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_PERSONAL_ACCESS_TOKEN, digest)


async def find_deploy_token(conn: Conn, digest: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_DEPLOY_TOKEN, digest)


async def find_job_token(conn: Conn, digest: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_JOB_TOKEN, digest)


# --- users and namespaces -----------------------------------------------------------------

FIND_USER_BY_USERNAME = "SELECT * FROM users WHERE lower(username) = lower($1)"

INSERT_USER = """
INSERT INTO users (username, name, email, is_admin, bot, external)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *
"""

INSERT_USER_NAMESPACE = """
INSERT INTO namespaces (kind, name, path, full_path, owner_id, visibility)
VALUES ('user', $1, $2, $2, $3, 'public')
RETURNING *
"""

INSERT_GROUP = """
INSERT INTO namespaces (kind, name, path, full_path, parent_id, visibility, description)
VALUES ('group', $1, $2, $3, $4, $5, $6)
RETURNING *
"""

FIND_NAMESPACE_BY_FULL_PATH = "SELECT * FROM namespaces WHERE lower(full_path) = lower($1)"

INSERT_PROJECT = """
INSERT INTO projects (namespace_id, name, path, description, visibility, packages_enabled,
                      creator_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *
"""

FIND_PROJECT_IN_NAMESPACE = """
SELECT * FROM projects WHERE namespace_id = $1 AND lower(path) = lower($2)
"""

INSERT_GROUP_MEMBER_IF_MISSING = """
INSERT INTO group_members (group_id, user_id, access_level) VALUES ($1, $2, $3)
ON CONFLICT (group_id, user_id) DO NOTHING
"""

UPSERT_PROJECT_MEMBER = """
INSERT INTO project_members (project_id, user_id, access_level, expires_at, created_by)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (project_id, user_id) DO UPDATE SET access_level = EXCLUDED.access_level,
                                               expires_at = EXCLUDED.expires_at
RETURNING *
"""


async def find_user_by_username(conn: Conn, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_USER_BY_USERNAME, username)


async def insert_user(
    conn: Conn, username: str, name: str, email: str, *, is_admin: bool = False,
    bot: bool = False, external: bool = False,
) -> asyncpg.Record:
    """A user and, as on GitLab, its personal namespace."""
    user = await conn.fetchrow(INSERT_USER, username, name, email, is_admin, bot, external)
    await conn.execute(INSERT_USER_NAMESPACE, name, username, user["id"])
    return user


async def find_namespace_by_full_path(conn: Conn, full_path: str) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_NAMESPACE_BY_FULL_PATH, full_path)


# --- projects as a caller sees them -------------------------------------------------------

# One project with its full path, the ancestry of its namespace, and the caller's effective
# access level: the highest of a direct membership, an inherited group membership (any
# ancestor group) and ownership of the personal namespace it lives in.
_PROJECT_FOR_CALLER = """
WITH RECURSIVE p AS (
    SELECT pr.*, n.full_path || '/' || pr.path AS path_with_namespace,
           n.kind AS namespace_kind, n.owner_id AS namespace_owner_id
    FROM projects pr JOIN namespaces n ON n.id = pr.namespace_id
    WHERE {where}
), ancestors AS (
    SELECT n.id, n.parent_id FROM namespaces n JOIN p ON n.id = p.namespace_id
    UNION ALL
    SELECT n.id, n.parent_id FROM namespaces n JOIN ancestors a ON n.id = a.parent_id
)
SELECT p.*,
       ARRAY(SELECT id FROM ancestors) AS ancestor_ids,
       COALESCE(GREATEST(
           (SELECT access_level FROM project_members m
             WHERE m.project_id = p.id AND m.user_id = $2
               AND (m.expires_at IS NULL OR m.expires_at > current_date)),
           (SELECT max(access_level) FROM group_members g
             WHERE g.group_id IN (SELECT id FROM ancestors) AND g.user_id = $2
               AND (g.expires_at IS NULL OR g.expires_at > current_date)),
           CASE WHEN p.namespace_kind = 'user' AND p.namespace_owner_id = $2 THEN 50 END
       ), 0) AS access_level
FROM p
"""

PROJECT_FOR_CALLER_BY_ID = _PROJECT_FOR_CALLER.format(where="pr.id = $1")
PROJECT_FOR_CALLER_BY_PATH = _PROJECT_FOR_CALLER.format(
    where="lower(n.full_path) = lower($1) AND lower(pr.path) = lower($3)"
)


async def project_for_caller(conn: Conn, ref: str, user_id: int | None) -> asyncpg.Record | None:
    """``ref`` is a numeric id or a full path (``group/sub/project``), case-insensitive."""
    uid = user_id or 0
    if ref.lstrip("-").isdigit():
        pid = int(ref)
        if not -(2**63) <= pid < 2**63:
            return None
        return await conn.fetchrow(PROJECT_FOR_CALLER_BY_ID, pid, uid)
    if "/" not in ref:
        return None
    namespace, _, path = ref.rpartition("/")
    return await conn.fetchrow(PROJECT_FOR_CALLER_BY_PATH, namespace, uid, path)


# --- groups as a caller sees them ---------------------------------------------------------

# One group with the caller's effective access level: the highest membership in it or in any
# ancestor group (members are inherited downwards).
_GROUP_FOR_CALLER = """
WITH RECURSIVE g AS (
    SELECT * FROM namespaces WHERE kind = 'group' AND {where}
), ancestors AS (
    SELECT n.id, n.parent_id FROM namespaces n JOIN g ON n.id = g.id
    UNION ALL
    SELECT n.id, n.parent_id FROM namespaces n JOIN ancestors a ON n.id = a.parent_id
)
SELECT g.*,
       ARRAY(SELECT id FROM ancestors) AS ancestor_ids,
       COALESCE((SELECT max(access_level) FROM group_members m
                  WHERE m.group_id IN (SELECT id FROM ancestors) AND m.user_id = $2
                    AND (m.expires_at IS NULL OR m.expires_at > current_date)), 0) AS access_level
FROM g
"""

GROUP_FOR_CALLER_BY_ID = _GROUP_FOR_CALLER.format(where="id = $1")
GROUP_FOR_CALLER_BY_PATH = _GROUP_FOR_CALLER.format(where="lower(full_path) = lower($1)")

# Every group below a group, itself included (group-wide package lists, group deploy tokens).
GROUP_AND_DESCENDANT_IDS = """
WITH RECURSIVE d AS (
    SELECT id FROM namespaces WHERE id = $1
    UNION ALL
    SELECT n.id FROM namespaces n JOIN d ON n.parent_id = d.id
)
SELECT array_agg(id) FROM d
"""


async def group_for_caller(conn: Conn, ref: str, user_id: int | None) -> asyncpg.Record | None:
    """``ref`` is a numeric id or a full path (``acme`` or ``acme/sub``), case-insensitive."""
    uid = user_id or 0
    if ref.lstrip("-").isdigit():
        gid = int(ref)
        if not -(2**63) <= gid < 2**63:
            return None
        return await conn.fetchrow(GROUP_FOR_CALLER_BY_ID, gid, uid)
    return await conn.fetchrow(GROUP_FOR_CALLER_BY_PATH, ref, uid)


async def group_and_descendant_ids(conn: Conn, group_id: int) -> list[int]:
    return list(await conn.fetchval(GROUP_AND_DESCENDANT_IDS, group_id) or [])
