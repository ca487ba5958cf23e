"""Named SQL for users, tokens, namespaces, projects and memberships."""

from __future__ import annotations

import asyncpg

Conn = asyncpg.Connection

# --- tokens -------------------------------------------------------------------------------

FIND_PERSONAL_ACCESS_TOKEN = """
SELECT t.id AS token_id, t.token_digest, t.scopes, t.expires_at, t.revoked,
       t.expires_at IS NOT NULL AND t.expires_at <= current_date AS expired,
       t.last_used_at IS NULL OR t.last_used_at < now() - interval '10 minutes' AS touch_due,
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
WHERE j.token_digest = $1 AND j.expires_at > now() AND NOT j.revoked
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
    SELECT {project_columns}
    FROM {project_from}
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

# What the Project entity shows besides the project's own columns: its namespace and, for a
# personal project, the namespace's owner.
PROJECT_COLUMNS = """
pr.*, n.full_path || '/' || pr.path AS path_with_namespace,
n.kind AS namespace_kind, n.owner_id AS namespace_owner_id, n.name AS namespace_name,
n.path AS namespace_path, n.full_path AS namespace_full_path,
COALESCE(n.full_name, n.name) AS namespace_full_name, n.parent_id AS namespace_parent_id,
o.username AS owner_username, o.name AS owner_name, o.state AS owner_state
"""
PROJECT_FROM = """
projects pr JOIN namespaces n ON n.id = pr.namespace_id LEFT JOIN users o ON o.id = n.owner_id
"""

PROJECT_FOR_CALLER_BY_ID = _PROJECT_FOR_CALLER.format(
    project_columns=PROJECT_COLUMNS, project_from=PROJECT_FROM, where="pr.id = $1"
)
PROJECT_FOR_CALLER_BY_PATH = _PROJECT_FOR_CALLER.format(
    project_columns=PROJECT_COLUMNS, project_from=PROJECT_FROM,
    where="lower(n.full_path) = lower($1) AND lower(pr.path) = lower($3)",
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


# --- paging -------------------------------------------------------------------------------


async def _page(
    conn: Conn, base: str, args: list[object], order: str, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """One page of ``base`` (a SELECT) and the number of rows it has in all."""
    total = await conn.fetchval(f"SELECT count(*) FROM ({base}) b", *args)
    n = len(args)
    rows = await conn.fetch(
        f"{base} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset
    )
    return rows, total


# --- users --------------------------------------------------------------------------------

USER_BY_ID = "SELECT * FROM users WHERE id = $1"

# GitLab checks the email first, then the username; a username is also a namespace path.
EMAIL_TAKEN = "SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1) AND id <> $2)"
USERNAME_TAKEN = """
SELECT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower($1) AND id <> $2)
    OR EXISTS (SELECT 1 FROM namespaces WHERE lower(full_path) = lower($1)
                                          AND (owner_id IS NULL OR owner_id <> $2))
"""

# Columns the administration API may set on a user, and the types they take.
USER_FIELDS = (
    "username", "name", "email", "is_admin", "can_create_group", "external", "private_profile",
    "projects_limit", "note", "bio", "location", "organization", "job_title", "public_email",
    "website_url", "password_digest", "confirmed_at", "bot", "bot_project_id", "bot_group_id",
    "state",
)

RENAME_USER_NAMESPACE = """
UPDATE namespaces SET path = $2, full_path = $2, name = $3, full_name = $3
WHERE kind = 'user' AND owner_id = $1
"""

DELETE_USER = "DELETE FROM users WHERE id = $1"

# Groups whose only Owner is this user: GitLab refuses to delete such a user (409).
SOLE_OWNED_GROUPS = """
SELECT g.group_id FROM group_members g
WHERE g.user_id = $1 AND g.access_level = 50
  AND NOT EXISTS (SELECT 1 FROM group_members o
                  WHERE o.group_id = g.group_id AND o.access_level = 50 AND o.user_id <> $1)
"""

SET_USER_STATE = "UPDATE users SET state = $2, updated_at = now() WHERE id = $1 RETURNING *"


async def user_by_id(conn: Conn, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(USER_BY_ID, user_id)


async def email_taken(conn: Conn, email: str, except_id: int = 0) -> bool:
    return await conn.fetchval(EMAIL_TAKEN, email, except_id)


async def username_taken(conn: Conn, username: str, except_id: int = 0) -> bool:
    return await conn.fetchval(USERNAME_TAKEN, username, except_id)


async def create_user(conn: Conn, fields: dict[str, object]) -> asyncpg.Record:
    """A user with the given columns (a subset of USER_FIELDS) and its personal namespace."""
    cols = [c for c in USER_FIELDS if c in fields]
    values = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    user = await conn.fetchrow(
        f"INSERT INTO users ({', '.join(cols)}) VALUES ({values}) RETURNING *",
        *(fields[c] for c in cols),
    )
    await conn.execute(INSERT_USER_NAMESPACE, user["name"], user["username"], user["id"])
    return user


async def update_user(conn: Conn, user_id: int, fields: dict[str, object]) -> asyncpg.Record:
    cols = [c for c in USER_FIELDS if c in fields]
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=2))
    user = await conn.fetchrow(
        f"UPDATE users SET {sets}{', ' if sets else ''}updated_at = now() WHERE id = $1 "
        "RETURNING *",
        user_id, *(fields[c] for c in cols),
    )
    if "username" in fields or "name" in fields:
        await conn.execute(RENAME_USER_NAMESPACE, user_id, user["username"], user["name"])
    return user


async def delete_user(conn: Conn, user_id: int) -> None:
    await conn.execute(DELETE_USER, user_id)


async def sole_owned_groups(conn: Conn, user_id: int) -> list[int]:
    return [r["group_id"] for r in await conn.fetch(SOLE_OWNED_GROUPS, user_id)]


async def set_user_state(conn: Conn, user_id: int, state: str) -> asyncpg.Record | None:
    return await conn.fetchrow(SET_USER_STATE, user_id, state)


_USER_ORDER = {"id": "id", "name": "name", "username": "username", "created_at": "created_at",
               "updated_at": "updated_at"}


async def list_users(
    conn: Conn, *, username: str | None = None, search: str | None = None,
    active: bool | None = None, blocked: bool | None = None, external: bool | None = None,
    admins: bool | None = None, humans: bool | None = None, without_bots: bool | None = None,
    search_email: bool = False, order_by: str = "id", sort: str = "desc", limit: int, offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where, args = ["true"], []

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if username is not None:
        where.append(f"lower(username) = lower({arg(username)})")
    if search:
        p = arg(f"%{search.lower()}%")
        email = f" OR lower(email) LIKE {p}" if search_email else ""
        where.append(f"(lower(name) LIKE {p} OR lower(username) LIKE {p}{email})")
    if active:
        where.append("state = 'active'")
    if blocked:
        where.append("state = 'blocked'")
    if external:
        where.append("external")
    if admins:
        where.append("is_admin")
    if humans or without_bots:
        where.append("NOT bot")
    order = f"{_USER_ORDER.get(order_by, 'id')} {'ASC' if sort == 'asc' else 'DESC'}, id"
    return await _page(
        conn, f"SELECT * FROM users WHERE {' AND '.join(where)}", args, order, limit, offset
    )


# --- groups -------------------------------------------------------------------------------

INSERT_SUBGROUP = """
INSERT INTO namespaces (kind, name, path, full_path, full_name, parent_id, visibility, description)
SELECT 'group', $1, $2, p.full_path || '/' || $2, COALESCE(p.full_name, p.name) || ' / ' || $1,
       p.id, $3, $4
FROM namespaces p WHERE p.id = $5
RETURNING *
"""

NAMESPACE_BY_ID = "SELECT * FROM namespaces WHERE id = $1"

GROUP_PATH_TAKEN = """
SELECT EXISTS (SELECT 1 FROM namespaces
               WHERE lower(full_path) = lower($1) AND id <> $2)
"""

# After a rename or move: full_path and full_name of the group and of everything below it.
REFRESH_GROUP_PATHS = """
WITH RECURSIVE t AS (
    SELECT n.id,
           CASE WHEN p.id IS NULL THEN n.path ELSE p.full_path || '/' || n.path END AS full_path,
           CASE WHEN p.id IS NULL THEN n.name
                ELSE COALESCE(p.full_name, p.name) || ' / ' || n.name END AS full_name
    FROM namespaces n LEFT JOIN namespaces p ON p.id = n.parent_id WHERE n.id = $1
    UNION ALL
    SELECT c.id, t.full_path || '/' || c.path, t.full_name || ' / ' || c.name
    FROM namespaces c JOIN t ON c.parent_id = t.id
)
UPDATE namespaces n SET full_path = t.full_path, full_name = t.full_name FROM t WHERE n.id = t.id
"""

GROUP_FIELDS = ("name", "path", "description", "visibility")

DELETE_NAMESPACE = "DELETE FROM namespaces WHERE id = $1"


async def namespace_by_id(conn: Conn, namespace_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(NAMESPACE_BY_ID, namespace_id)


async def group_path_taken(conn: Conn, full_path: str, except_id: int = 0) -> bool:
    return await conn.fetchval(GROUP_PATH_TAKEN, full_path, except_id)


async def create_group(
    conn: Conn, name: str, path: str, visibility: str, description: str, parent_id: int | None
) -> asyncpg.Record:
    if parent_id is None:
        return await conn.fetchrow(INSERT_GROUP, name, path, path, None, visibility, description)
    return await conn.fetchrow(INSERT_SUBGROUP, name, path, visibility, description, parent_id)


async def update_group(conn: Conn, group_id: int, fields: dict[str, object]) -> None:
    cols = [c for c in GROUP_FIELDS if c in fields]
    if not cols:
        return
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=2))
    await conn.execute(
        f"UPDATE namespaces SET {sets} WHERE id = $1", group_id, *(fields[c] for c in cols)
    )
    if "name" in fields or "path" in fields:
        await conn.execute(REFRESH_GROUP_PATHS, group_id)


async def delete_namespace(conn: Conn, namespace_id: int) -> None:
    await conn.execute(DELETE_NAMESPACE, namespace_id)


# Every namespace in which a user holds a group membership, directly or inherited from an
# ancestor, with the highest level (members of a group are members of everything below it).
_INHERITED_LEVELS = """
inherited AS (
    SELECT gm.group_id AS id, gm.access_level FROM group_members gm
    WHERE gm.user_id = $1 AND (gm.expires_at IS NULL OR gm.expires_at > current_date)
    UNION ALL
    SELECT n.id, i.access_level FROM namespaces n JOIN inherited i ON n.parent_id = i.id
), levels AS (
    SELECT id, max(access_level) AS level FROM inherited GROUP BY id
)
"""

_GROUP_ORDER = {"name": "g.name", "path": "g.path", "id": "g.id"}


async def list_groups(
    conn: Conn, user_id: int | None, *, admin: bool, signed_in: bool, search: str | None = None,
    owned: bool = False, min_access_level: int | None = None, top_level_only: bool = False,
    parent_id: int | None = None, order_by: str = "name", sort: str = "asc", limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """Groups the caller can see ($1 user, $2 admin, $3 signed-in and not external)."""
    args: list[object] = [user_id or 0, admin, signed_in]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    where = ["g.kind = 'group'",
             "($2 OR g.visibility = 'public' OR (g.visibility = 'internal' AND $3) "
             "OR l.level IS NOT NULL)"]
    if search:
        p = arg(f"%{search.lower()}%")
        where.append(f"(lower(g.name) LIKE {p} OR lower(g.path) LIKE {p})")
    if owned:
        where.append("l.level >= 50")
    if min_access_level is not None:
        where.append(f"l.level >= {arg(min_access_level)}")
    if top_level_only:
        where.append("g.parent_id IS NULL")
    if parent_id is not None:
        where.append(f"g.parent_id = {arg(parent_id)}")
    base = f"""
        WITH RECURSIVE {_INHERITED_LEVELS}
        SELECT g.*, COALESCE(l.level, 0) AS access_level
        FROM namespaces g LEFT JOIN levels l ON l.id = g.id
        WHERE {' AND '.join(where)}"""
    order = f"{_GROUP_ORDER.get(order_by, 'g.name')} {'DESC' if sort == 'desc' else 'ASC'}, id"
    return await _page(conn, base, args, order, limit, offset)


# --- projects -----------------------------------------------------------------------------

PROJECT_FIELDS = ("name", "path", "description", "visibility", "packages_enabled",
                  "package_registry_access_level")

INSERT_PROJECT_FULL = """
INSERT INTO projects (namespace_id, name, path, description, visibility, packages_enabled,
                      package_registry_access_level, creator_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""

DELETE_PROJECT = "DELETE FROM projects WHERE id = $1"


PROJECT_NAMES_TAKEN = """
SELECT bool_or(lower(path) = lower($2)) AS path, bool_or(name = $3) AS name
FROM projects WHERE namespace_id = $1 AND id <> $4
"""


async def project_path_taken(
    conn: Conn, namespace_id: int, path: str, name: str, except_id: int = 0
) -> list[str]:
    """Which of ``path`` and ``name`` another project of the namespace already uses."""
    row = await conn.fetchrow(PROJECT_NAMES_TAKEN, namespace_id, path, name, except_id)
    return [k for k in ("name", "path") if row[k]]


async def create_project(conn: Conn, namespace_id: int, fields: dict[str, object],
                         creator_id: int | None) -> asyncpg.Record:
    return await conn.fetchrow(
        INSERT_PROJECT_FULL, namespace_id, fields["name"], fields["path"],
        fields.get("description", ""), fields.get("visibility", "private"),
        fields.get("packages_enabled", True), fields.get("package_registry_access_level"),
        creator_id,
    )


async def update_project(conn: Conn, project_id: int, fields: dict[str, object]) -> None:
    cols = [c for c in PROJECT_FIELDS if c in fields]
    sets = "".join(f"{c} = ${i}, " for i, c in enumerate(cols, start=2))
    await conn.execute(
        f"UPDATE projects SET {sets}updated_at = now() WHERE id = $1",
        project_id, *(fields[c] for c in cols),
    )


async def delete_project(conn: Conn, project_id: int) -> None:
    await conn.execute(DELETE_PROJECT, project_id)


_PROJECT_ORDER = {"id": "id", "name": "name", "path": "path", "created_at": "created_at",
                  "updated_at": "updated_at", "last_activity_at": "last_activity_at"}


async def list_projects(
    conn: Conn, user_id: int | None, *, admin: bool, signed_in: bool, search: str | None = None,
    owned: bool = False, membership: bool = False, visibility: str | None = None,
    min_access_level: int | None = None, namespace_ids: list[int] | None = None,
    order_by: str = "created_at", sort: str = "desc", limit: int, offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """Projects the caller can see ($1 user, $2 admin, $3 signed-in and not external), each with
    the caller's effective access level."""
    args: list[object] = [user_id or 0, admin, signed_in]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    level = """GREATEST(COALESCE(pm.access_level, 0), COALESCE(l.level, 0),
                        CASE WHEN n.kind = 'user' AND n.owner_id = $1 THEN 50 ELSE 0 END)"""
    where = [f"($2 OR pr.visibility = 'public' OR (pr.visibility = 'internal' AND $3) "
             f"OR {level} >= 10)"]  # Guest or more: Minimal access (5) sees no project
    if search:
        p = arg(f"%{search.lower()}%")
        where.append(f"(lower(pr.name) LIKE {p} OR lower(pr.path) LIKE {p})")
    if owned:
        where.append("n.kind = 'user' AND n.owner_id = $1")
    if membership:
        where.append(f"{level} >= 10")
    if visibility:
        where.append(f"pr.visibility = {arg(visibility)}")
    if min_access_level is not None:
        where.append(f"{level} >= {arg(min_access_level)}")
    if namespace_ids is not None:
        where.append(f"pr.namespace_id = ANY({arg(namespace_ids)}::bigint[])")
    base = f"""
        WITH RECURSIVE {_INHERITED_LEVELS}
        SELECT {PROJECT_COLUMNS}, {level} AS access_level
        FROM {PROJECT_FROM}
        LEFT JOIN project_members pm ON pm.project_id = pr.id AND pm.user_id = $1
             AND (pm.expires_at IS NULL OR pm.expires_at > current_date)
        LEFT JOIN levels l ON l.id = pr.namespace_id
        WHERE {' AND '.join(where)}"""
    order = f"{_PROJECT_ORDER.get(order_by, 'created_at')} {'ASC' if sort == 'asc' else 'DESC'}"
    return await _page(conn, base, args, f"{order}, id", limit, offset)


# --- members ------------------------------------------------------------------------------

_MEMBER_USER = """
u.id, u.username, u.name, u.state, u.bot, m.access_level, m.created_at, m.expires_at,
m.created_by, c.username AS created_by_username, c.name AS created_by_name,
c.state AS created_by_state
"""

# Direct members of a project ($1) or group ($1); $2 filters by user id when not null.
PROJECT_MEMBERS = f"""
SELECT {_MEMBER_USER} FROM project_members m JOIN users u ON u.id = m.user_id
LEFT JOIN users c ON c.id = m.created_by
WHERE m.project_id = $1 AND ($2::bigint IS NULL OR m.user_id = $2)
  AND ($3::text IS NULL OR lower(u.username) LIKE $3 OR lower(u.name) LIKE $3)
"""

GROUP_MEMBERS = f"""
SELECT {_MEMBER_USER} FROM group_members m JOIN users u ON u.id = m.user_id
LEFT JOIN users c ON c.id = m.created_by
WHERE m.group_id = $1 AND ($2::bigint IS NULL OR m.user_id = $2)
  AND ($3::text IS NULL OR lower(u.username) LIKE $3 OR lower(u.name) LIKE $3)
"""

# Members including those inherited from ancestor groups ($4: the ancestor ids); for each user
# the highest level wins.
PROJECT_MEMBERS_ALL = f"""
SELECT DISTINCT ON (u.id) {_MEMBER_USER} FROM (
    SELECT user_id, access_level, created_at, expires_at, created_by FROM project_members
    WHERE project_id = $1
    UNION ALL
    SELECT user_id, access_level, created_at, expires_at, created_by FROM group_members
    WHERE group_id = ANY($4::bigint[])
) m JOIN users u ON u.id = m.user_id LEFT JOIN users c ON c.id = m.created_by
WHERE ($2::bigint IS NULL OR m.user_id = $2)
  AND ($3::text IS NULL OR lower(u.username) LIKE $3 OR lower(u.name) LIKE $3)
ORDER BY u.id, m.access_level DESC
"""

GROUP_MEMBERS_ALL = f"""
SELECT DISTINCT ON (u.id) {_MEMBER_USER} FROM group_members m
JOIN users u ON u.id = m.user_id LEFT JOIN users c ON c.id = m.created_by
WHERE m.group_id = ANY($4::bigint[]) AND ($2::bigint IS NULL OR m.user_id = $2)
  AND ($3::text IS NULL OR lower(u.username) LIKE $3 OR lower(u.name) LIKE $3)
  AND $1::bigint IS NOT NULL
ORDER BY u.id, m.access_level DESC
"""

INSERT_PROJECT_MEMBER = """
INSERT INTO project_members (project_id, user_id, access_level, expires_at, created_by)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, user_id) DO NOTHING RETURNING id
"""
INSERT_GROUP_MEMBER = """
INSERT INTO group_members (group_id, user_id, access_level, expires_at, created_by)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (group_id, user_id) DO NOTHING RETURNING id
"""
UPDATE_PROJECT_MEMBER = """
UPDATE project_members SET access_level = $3, expires_at = $4
WHERE project_id = $1 AND user_id = $2 RETURNING id
"""
UPDATE_GROUP_MEMBER = """
UPDATE group_members SET access_level = $3, expires_at = $4
WHERE group_id = $1 AND user_id = $2 RETURNING id
"""
DELETE_PROJECT_MEMBER = """
DELETE FROM project_members WHERE project_id = $1 AND user_id = $2 RETURNING id
"""
DELETE_GROUP_MEMBER = """
DELETE FROM group_members WHERE group_id = $1 AND user_id = $2 RETURNING id
"""

_MEMBER_SQL = {
    "project": (PROJECT_MEMBERS, PROJECT_MEMBERS_ALL, INSERT_PROJECT_MEMBER,
                UPDATE_PROJECT_MEMBER, DELETE_PROJECT_MEMBER),
    "group": (GROUP_MEMBERS, GROUP_MEMBERS_ALL, INSERT_GROUP_MEMBER, UPDATE_GROUP_MEMBER,
              DELETE_GROUP_MEMBER),
}


async def list_members(
    conn: Conn, source: str, source_id: int, *, inherited_from: list[int] | None = None,
    user_id: int | None = None, query: str | None = None, limit: int = 10_000, offset: int = 0,
) -> tuple[list[asyncpg.Record], int]:
    """Members of a project or group (``source``); with ``inherited_from`` (ancestor group ids)
    the inherited ones too, highest level winning."""
    direct, everyone, *_ = _MEMBER_SQL[source]
    like = f"%{query.lower()}%" if query else None
    if inherited_from is None:
        return await _page(conn, direct, [source_id, user_id, like], "id", limit, offset)
    base = f"SELECT * FROM ({everyone}) a"
    return await _page(conn, base, [source_id, user_id, like, inherited_from], "id", limit,
                       offset)


async def add_member(conn: Conn, source: str, source_id: int, user_id: int, level: int,
                     expires_at: object, created_by: int | None) -> bool:
    """False when the user is already a direct member."""
    sql = _MEMBER_SQL[source][2]
    return await conn.fetchval(sql, source_id, user_id, level, expires_at, created_by) is not None


async def update_member(conn: Conn, source: str, source_id: int, user_id: int, level: int,
                        expires_at: object) -> bool:
    sql = _MEMBER_SQL[source][3]
    return await conn.fetchval(sql, source_id, user_id, level, expires_at) is not None


async def remove_member(conn: Conn, source: str, source_id: int, user_id: int) -> bool:
    return await conn.fetchval(_MEMBER_SQL[source][4], source_id, user_id) is not None


# --- personal, project and group access tokens --------------------------------------------

_PAT_COLUMNS = """
t.id, t.user_id, t.name, t.description, t.scopes, t.expires_at, t.revoked, t.created_at,
t.last_used_at, t.access_level,
t.expires_at IS NOT NULL AND t.expires_at <= current_date AS expired,
u.bot_project_id, u.bot_group_id
"""

PAT_BY_ID = f"""
SELECT {_PAT_COLUMNS} FROM personal_access_tokens t JOIN users u ON u.id = t.user_id
WHERE t.id = $1
"""

INSERT_RESOURCE_TOKEN = """
INSERT INTO personal_access_tokens (user_id, name, token_digest, scopes, expires_at, description,
                                    access_level, previous_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""

REVOKE_PAT = """
UPDATE personal_access_tokens SET revoked = true WHERE id = $1 AND NOT revoked RETURNING id
"""

TOUCH_PAT = """
UPDATE personal_access_tokens SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '10 minutes')
"""


async def pat_by_id(conn: Conn, token_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(PAT_BY_ID, token_id)


async def insert_token(
    conn: Conn, user_id: int, name: str, digest: bytes, scopes: list[str], expires_at: object,
    description: str | None, access_level: int | None = None, previous_id: int | None = None,
) -> asyncpg.Record:
    return await conn.fetchrow(INSERT_RESOURCE_TOKEN, user_id, name, digest, scopes, expires_at,
                               description, access_level, previous_id)


async def revoke_pat(conn: Conn, token_id: int) -> bool:
    return await conn.fetchval(REVOKE_PAT, token_id) is not None


async def touch_pat(conn: Conn, token_id: int) -> None:
    await conn.execute(TOUCH_PAT, token_id)


async def list_pats(
    conn: Conn, *, user_id: int | None = None, bot_project_id: int | None = None,
    bot_group_id: int | None = None, revoked: bool | None = None, state: str | None = None,
    search: str | None = None, limit: int, offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where, args = ["true"], []

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if user_id is not None:
        where.append(f"t.user_id = {arg(user_id)}")
    if bot_project_id is not None:
        where.append(f"u.bot_project_id = {arg(bot_project_id)}")
    if bot_group_id is not None:
        where.append(f"u.bot_group_id = {arg(bot_group_id)}")
    if revoked is not None:
        where.append(f"t.revoked = {arg(revoked)}")
    active = "(NOT t.revoked AND (t.expires_at IS NULL OR t.expires_at > current_date))"
    if state == "active":
        where.append(active)
    elif state == "inactive":
        where.append(f"NOT {active}")
    if search:
        where.append(f"lower(t.name) LIKE {arg(f'%{search.lower()}%')}")
    base = (f"SELECT {_PAT_COLUMNS} FROM personal_access_tokens t "
            f"JOIN users u ON u.id = t.user_id WHERE {' AND '.join(where)}")
    return await _page(conn, base, args, "id", limit, offset)


# --- deploy tokens ------------------------------------------------------------------------

# The default username names the token's own id, so the id is drawn before the insert.
INSERT_DEPLOY_TOKEN = """
WITH n AS (SELECT nextval(pg_get_serial_sequence('deploy_tokens', 'id')) AS id)
INSERT INTO deploy_tokens (id, project_id, group_id, name, username, token_digest, scopes,
                           expires_at)
SELECT n.id, $1, $2, $3, COALESCE($4, 'gitlab+deploy-token-' || n.id), $5, $6, $7 FROM n
RETURNING *, expires_at IS NOT NULL AND expires_at <= now() AS expired
"""

_DEPLOY_COLUMNS = "*, expires_at IS NOT NULL AND expires_at <= now() AS expired"

DELETE_DEPLOY_TOKEN = """
DELETE FROM deploy_tokens WHERE id = $1
  AND (project_id = $2 OR group_id = $3) RETURNING id
"""

DEPLOY_TOKEN_IN = f"""
SELECT {_DEPLOY_COLUMNS} FROM deploy_tokens WHERE id = $1 AND (project_id = $2 OR group_id = $3)
"""


async def insert_deploy_token(
    conn: Conn, project_id: int | None, group_id: int | None, name: str, username: str | None,
    digest: bytes, scopes: list[str], expires_at: object,
) -> asyncpg.Record:
    return await conn.fetchrow(INSERT_DEPLOY_TOKEN, project_id, group_id, name, username, digest,
                               scopes, expires_at)


async def deploy_token_in(conn: Conn, token_id: int, project_id: int | None,
                          group_id: int | None) -> asyncpg.Record | None:
    return await conn.fetchrow(DEPLOY_TOKEN_IN, token_id, project_id, group_id)


async def delete_deploy_token(conn: Conn, token_id: int, project_id: int | None,
                              group_id: int | None) -> bool:
    return await conn.fetchval(DELETE_DEPLOY_TOKEN, token_id, project_id, group_id) is not None


async def list_deploy_tokens(
    conn: Conn, *, project_id: int | None = None, group_id: int | None = None,
    active: bool | None = None, limit: int, offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where, args = ["true"], []
    if project_id is not None:
        args.append(project_id)
        where.append(f"project_id = ${len(args)}")
    if group_id is not None:
        args.append(group_id)
        where.append(f"group_id = ${len(args)}")
    if active is not None:
        live = "(NOT revoked AND (expires_at IS NULL OR expires_at > now()))"
        where.append(live if active else f"NOT {live}")
    base = f"SELECT {_DEPLOY_COLUMNS} FROM deploy_tokens WHERE {' AND '.join(where)}"
    return await _page(conn, base, args, "id", limit, offset)


USER_NAMESPACE = "SELECT * FROM namespaces WHERE kind = 'user' AND owner_id = $1"


async def user_namespace(conn: Conn, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(USER_NAMESPACE, user_id)
