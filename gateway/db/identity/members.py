"""Named SQL for project and group memberships."""

from __future__ import annotations

import asyncpg

from gateway.db.identity.query import page
from gateway.models import Member

Conn = asyncpg.Connection

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
# Owners of a group other than this user (a group keeps at least one Owner).
OTHER_GROUP_OWNERS = """
SELECT count(*) FROM group_members WHERE group_id = $1 AND access_level = 50 AND user_id <> $2
"""
# Serializes changes to one group's Owners (GitLab's lock around ``last_owner?``).
LOCK_MEMBERS = "SELECT pg_advisory_xact_lock(hashtextextended('members/' || $1 || '/' || $2, 7))"

_SQL = {
    "project": (PROJECT_MEMBERS, PROJECT_MEMBERS_ALL, INSERT_PROJECT_MEMBER,
                UPDATE_PROJECT_MEMBER, DELETE_PROJECT_MEMBER),
    "group": (GROUP_MEMBERS, GROUP_MEMBERS_ALL, INSERT_GROUP_MEMBER, UPDATE_GROUP_MEMBER,
              DELETE_GROUP_MEMBER),
}


async def list_members(
    conn: Conn, source: str, source_id: int, *, inherited_from: list[int] | None = None,
    user_id: int | None = None, query: str | None = None, limit: int = 10_000, offset: int = 0,
) -> tuple[list[Member], int]:
    """Members of a project or group (``source``); with ``inherited_from`` (ancestor group ids)
    the inherited ones too, highest level winning."""
    direct, everyone, *_ = _SQL[source]
    like = f"%{query.lower()}%" if query else None
    if inherited_from is None:
        rows, total = await page(conn, direct, [source_id, user_id, like], "id", limit, offset)
    else:
        rows, total = await page(conn, f"SELECT * FROM ({everyone}) a",
                                 [source_id, user_id, like, inherited_from], "id", limit, offset)
    return [Member.from_row(r) for r in rows], total


async def direct_member(conn: Conn, source: str, source_id: int, user_id: int) -> Member | None:
    rows, _ = await list_members(conn, source, source_id, user_id=user_id)
    return rows[0] if rows else None


async def add(conn: Conn, source: str, source_id: int, user_id: int, level: int,
              expires_at: object, created_by: int | None) -> bool:
    """False when the user is already a direct member."""
    sql = _SQL[source][2]
    return await conn.fetchval(sql, source_id, user_id, level, expires_at, created_by) is not None


async def update(conn: Conn, source: str, source_id: int, user_id: int, level: int,
                 expires_at: object) -> bool:
    return await conn.fetchval(_SQL[source][3], source_id, user_id, level, expires_at) is not None


async def remove(conn: Conn, source: str, source_id: int, user_id: int) -> bool:
    return await conn.fetchval(_SQL[source][4], source_id, user_id) is not None


async def other_group_owners(conn: Conn, group_id: int, user_id: int) -> int:
    return await conn.fetchval(OTHER_GROUP_OWNERS, group_id, user_id)


async def lock(conn: Conn, source: str, source_id: int) -> None:
    await conn.execute(LOCK_MEMBERS, source, str(source_id))
