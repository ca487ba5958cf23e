"""Named SQL for groups (namespaces of kind 'group'), also as one caller sees them."""

from __future__ import annotations

import asyncpg

from gateway.db.identity.projects import INHERITED_LEVELS
from gateway.db.identity.query import Where, page
from gateway.models import Group

Conn = asyncpg.Connection

# One group with its ancestry (itself first) and the caller's effective access level: the
# highest membership in it or in any ancestor group (members are inherited downwards).
_GROUP_FOR_CALLER = """
WITH RECURSIVE g AS (
    SELECT * FROM namespaces WHERE kind = 'group' AND {where}
), ancestors AS (
    SELECT n.id, n.parent_id, 1 AS depth FROM namespaces n JOIN g ON n.id = g.id
    UNION ALL
    SELECT n.id, n.parent_id, a.depth + 1 FROM namespaces n JOIN ancestors a ON n.id = a.parent_id
)
SELECT g.*,
       ARRAY(SELECT id FROM ancestors ORDER BY depth) AS ancestor_ids,
       (SELECT max(depth) FROM ancestors) AS depth,
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

# How many levels the deepest subgroup lies below this group (0: it has none).
SUBTREE_HEIGHT = """
WITH RECURSIVE d AS (
    SELECT id, 0 AS height FROM namespaces WHERE id = $1
    UNION ALL
    SELECT n.id, d.height + 1 FROM namespaces n JOIN d ON n.parent_id = d.id
)
SELECT max(height) FROM d
"""

# The most visible project and subgroup directly in a group (a group is never less visible).
MOST_VISIBLE_CHILDREN = """
SELECT
  (SELECT max(CASE visibility WHEN 'public' THEN 20 WHEN 'internal' THEN 10 ELSE 0 END)
     FROM projects WHERE namespace_id = $1) AS project_rank,
  (SELECT max(CASE visibility WHEN 'public' THEN 20 WHEN 'internal' THEN 10 ELSE 0 END)
     FROM namespaces WHERE parent_id = $1) AS subgroup_rank
"""

INSERT_GROUP = """
INSERT INTO namespaces (kind, name, path, full_path, parent_id, visibility, description)
VALUES ('group', $1, $2, $2, NULL, $3, $4)
RETURNING *
"""

INSERT_SUBGROUP = """
INSERT INTO namespaces (kind, name, path, full_path, full_name, parent_id, visibility, description)
SELECT 'group', $1, $2, p.full_path || '/' || $2, COALESCE(p.full_name, p.name) || ' / ' || $1,
       p.id, $3, $4
FROM namespaces p WHERE p.id = $5
RETURNING *
"""

NAMESPACE_BY_ID = "SELECT * FROM namespaces WHERE id = $1"
NAMESPACE_BY_FULL_PATH = "SELECT * FROM namespaces WHERE lower(full_path) = lower($1)"

PATH_TAKEN = """
SELECT EXISTS (SELECT 1 FROM namespaces WHERE lower(full_path) = lower($1) AND id <> $2)
"""

# After a rename or move: full_path and full_name of the group and of everything below it.
REFRESH_PATHS = """
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

DELETE_NAMESPACE = "DELETE FROM namespaces WHERE id = $1 RETURNING id"


async def for_caller(conn: Conn, ref: int | str, user_id: int | None) -> Group | None:
    """``ref`` is an id or a full path (``acme`` or ``acme/sub``), case-insensitive."""
    sql = GROUP_FOR_CALLER_BY_ID if isinstance(ref, int) else GROUP_FOR_CALLER_BY_PATH
    return Group.from_optional(await conn.fetchrow(sql, ref, user_id or 0))


async def namespace_by_id(conn: Conn, namespace_id: int) -> Group | None:
    """Any namespace, a user's personal one included (``kind`` tells them apart)."""
    return Group.from_optional(await conn.fetchrow(NAMESPACE_BY_ID, namespace_id))


async def namespace_by_full_path(conn: Conn, full_path: str) -> Group | None:
    return Group.from_optional(await conn.fetchrow(NAMESPACE_BY_FULL_PATH, full_path))


async def group_and_descendant_ids(conn: Conn, group_id: int) -> list[int]:
    return list(await conn.fetchval(GROUP_AND_DESCENDANT_IDS, group_id) or [])


async def subtree_height(conn: Conn, group_id: int) -> int:
    return await conn.fetchval(SUBTREE_HEIGHT, group_id) or 0


async def most_visible_children(conn: Conn, group_id: int) -> tuple[int, int]:
    """The visibility ranks of the most visible project and subgroup directly inside (-1:
    none)."""
    row = await conn.fetchrow(MOST_VISIBLE_CHILDREN, group_id)
    return (-1 if row["project_rank"] is None else row["project_rank"],
            -1 if row["subgroup_rank"] is None else row["subgroup_rank"])


async def path_taken(conn: Conn, full_path: str, except_id: int = 0) -> bool:
    return await conn.fetchval(PATH_TAKEN, full_path, except_id)


async def insert(
    conn: Conn, name: str, path: str, visibility: str, description: str, parent_id: int | None
) -> Group:
    if parent_id is None:
        row = await conn.fetchrow(INSERT_GROUP, name, path, visibility, description)
    else:
        row = await conn.fetchrow(INSERT_SUBGROUP, name, path, visibility, description, parent_id)
    return Group.from_row(row)


async def update(conn: Conn, group_id: int, fields: dict[str, object]) -> None:
    cols = [c for c in GROUP_FIELDS if c in fields]
    if not cols:
        return
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=2))
    await conn.execute(
        f"UPDATE namespaces SET {sets} WHERE id = $1", group_id, *(fields[c] for c in cols)
    )
    if "name" in fields or "path" in fields:
        await conn.execute(REFRESH_PATHS, group_id)


async def delete(conn: Conn, namespace_id: int) -> bool:
    return await conn.fetchval(DELETE_NAMESPACE, namespace_id) is not None


_ORDER = {"name": "g.name", "path": "g.path", "id": "g.id"}


async def list_groups(
    conn: Conn, user_id: int | None, *, admin: bool, signed_in: bool, search: str | None = None,
    owned: bool = False, min_access_level: int | None = None, top_level_only: bool = False,
    parent_id: int | None = None, order_by: str = "name", sort: str = "asc", limit: int,
    offset: int,
) -> tuple[list[Group], int]:
    """Groups the caller can see ($1 user, $2 admin, $3 signed-in and not external)."""
    where = Where([user_id or 0, admin, signed_in])
    where.add("g.kind = 'group'")
    where.add("($2 OR g.visibility = 'public' OR (g.visibility = 'internal' AND $3) "
              "OR l.level IS NOT NULL)")
    where.like(("g.name", "g.path"), search)
    if owned:
        where.add("l.level >= 50")
    if min_access_level is not None:
        where.add(f"l.level >= {where.arg(min_access_level)}")
    if top_level_only:
        where.add("g.parent_id IS NULL")
    where.equals("g.parent_id", parent_id)
    base = f"""
        WITH RECURSIVE {INHERITED_LEVELS}
        SELECT g.*, COALESCE(l.level, 0) AS access_level
        FROM namespaces g LEFT JOIN levels l ON l.id = g.id
        WHERE {where.sql}"""
    order = f"{_ORDER.get(order_by, 'g.name')} {'DESC' if sort == 'desc' else 'ASC'}, id"
    rows, total = await page(conn, base, where.args, order, limit, offset)
    return [Group.from_row(r) for r in rows], total
