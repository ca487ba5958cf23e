"""Named SQL for projects, also as one caller sees them (with the caller's access level)."""

from __future__ import annotations

import asyncpg

from gateway.db.identity.query import Where, page
from gateway.models import Project

Conn = asyncpg.Connection

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
n.visibility AS namespace_visibility,
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


async def for_caller(conn: Conn, ref: int | str, user_id: int | None) -> Project | None:
    """``ref`` is an id or a full path (``group/sub/project``, case-insensitive)."""
    row = await conn.fetchrow(*for_caller_query(ref, user_id))
    return Project.from_optional(row)


def for_caller_query(ref: int | str, user_id: int | None) -> tuple[object, ...]:
    """The query and arguments of ``for_caller`` (the download path extends it)."""
    uid = user_id or 0
    if isinstance(ref, int):
        return PROJECT_FOR_CALLER_BY_ID, ref, uid
    namespace, _, path = ref.rpartition("/")
    # A path without a namespace finds nothing: '' matches no namespace.
    return PROJECT_FOR_CALLER_BY_PATH, namespace, uid, path


PROJECT_FIELDS = ("name", "path", "description", "visibility", "packages_enabled",
                  "package_registry_access_level")

INSERT_PROJECT = """
INSERT INTO projects (namespace_id, name, path, description, visibility, packages_enabled,
                      package_registry_access_level, creator_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""

FIND_IN_NAMESPACE = "SELECT * FROM projects WHERE namespace_id = $1 AND lower(path) = lower($2)"

DELETE_PROJECT = "DELETE FROM projects WHERE id = $1 RETURNING id"

NAMES_TAKEN = """
SELECT bool_or(lower(path) = lower($2)) AS path, bool_or(name = $3) AS name
FROM projects WHERE namespace_id = $1 AND id <> $4
"""


async def names_taken(
    conn: Conn, namespace_id: int, path: str, name: str, except_id: int = 0
) -> list[str]:
    """Which of ``path`` and ``name`` another project of the namespace already uses."""
    row = await conn.fetchrow(NAMES_TAKEN, namespace_id, path, name, except_id)
    return [k for k in ("name", "path") if row[k]]


async def insert(conn: Conn, namespace_id: int, fields: dict[str, object],
                 creator_id: int | None) -> Project:
    row = await conn.fetchrow(
        INSERT_PROJECT, namespace_id, fields["name"], fields["path"],
        fields.get("description", ""), fields.get("visibility", "private"),
        fields.get("packages_enabled", True), fields.get("package_registry_access_level"),
        creator_id,
    )
    return Project.from_row(row)


async def find_in_namespace(conn: Conn, namespace_id: int, path: str) -> Project | None:
    return Project.from_optional(await conn.fetchrow(FIND_IN_NAMESPACE, namespace_id, path))


async def update(conn: Conn, project_id: int, fields: dict[str, object]) -> None:
    cols = [c for c in PROJECT_FIELDS if c in fields]
    sets = "".join(f"{c} = ${i}, " for i, c in enumerate(cols, start=2))
    await conn.execute(
        f"UPDATE projects SET {sets}updated_at = now() WHERE id = $1",
        project_id, *(fields[c] for c in cols),
    )


async def delete(conn: Conn, project_id: int) -> bool:
    return await conn.fetchval(DELETE_PROJECT, project_id) is not None


# Every namespace in which a user holds a group membership, directly or inherited from an
# ancestor, with the highest level (members of a group are members of everything below it).
INHERITED_LEVELS = """
inherited AS (
    SELECT gm.group_id AS id, gm.access_level FROM group_members gm
    WHERE gm.user_id = $1 AND (gm.expires_at IS NULL OR gm.expires_at > current_date)
    UNION ALL
    SELECT n.id, i.access_level FROM namespaces n JOIN inherited i ON n.parent_id = i.id
), levels AS (
    SELECT id, max(access_level) AS level FROM inherited GROUP BY id
)
"""

_ORDER = {"id": "id", "name": "name", "path": "path", "created_at": "created_at",
          "updated_at": "updated_at", "last_activity_at": "last_activity_at"}


async def list_projects(
    conn: Conn, user_id: int | None, *, admin: bool, signed_in: bool, search: str | None = None,
    owned: bool = False, membership: bool = False, visibility: str | None = None,
    min_access_level: int | None = None, namespace_ids: list[int] | None = None,
    id_after: int | None = None, id_before: int | None = None,
    order_by: str = "created_at", sort: str = "desc", limit: int, offset: int,
    count: bool = True,
) -> tuple[list[Project], int]:
    """Projects the caller can see ($1 user, $2 admin, $3 signed-in and not external), each with
    the caller's effective access level."""
    where = Where([user_id or 0, admin, signed_in])
    level = """GREATEST(COALESCE(pm.access_level, 0), COALESCE(l.level, 0),
                        CASE WHEN n.kind = 'user' AND n.owner_id = $1 THEN 50 ELSE 0 END)"""
    # Guest or more: Minimal access (5) sees no project.
    where.add(f"($2 OR pr.visibility = 'public' OR (pr.visibility = 'internal' AND $3) "
              f"OR {level} >= 10)")
    where.like(("pr.name", "pr.path"), search)
    if owned:
        where.add("n.kind = 'user' AND n.owner_id = $1")
    if membership:
        where.add(f"{level} >= 10")
    where.equals("pr.visibility", visibility)
    if min_access_level is not None:
        where.add(f"{level} >= {where.arg(min_access_level)}")
    if namespace_ids is not None:
        where.add(f"pr.namespace_id = ANY({where.arg(namespace_ids)}::bigint[])")
    if id_after is not None:
        where.add(f"pr.id > {where.arg(id_after)}")
    if id_before is not None:
        where.add(f"pr.id < {where.arg(id_before)}")
    base = f"""
        WITH RECURSIVE {INHERITED_LEVELS}
        SELECT {PROJECT_COLUMNS}, {level} AS access_level
        FROM {PROJECT_FROM}
        LEFT JOIN project_members pm ON pm.project_id = pr.id AND pm.user_id = $1
             AND (pm.expires_at IS NULL OR pm.expires_at > current_date)
        LEFT JOIN levels l ON l.id = pr.namespace_id
        WHERE {where.sql}"""
    order = f"{_ORDER.get(order_by, 'created_at')} {'ASC' if sort == 'asc' else 'DESC'}"
    rows, total = await page(conn, base, where.args, f"{order}, id", limit, offset,
                             count=count)
    return [Project.from_row(r) for r in rows], total
