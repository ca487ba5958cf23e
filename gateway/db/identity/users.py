"""Named SQL for users and their personal namespaces."""

from __future__ import annotations

import asyncpg

from gateway.db.identity.query import Where, page
from gateway.models import User

Conn = asyncpg.Connection

USER_BY_ID = "SELECT * FROM users WHERE id = $1"
USER_BY_USERNAME = "SELECT * FROM users WHERE lower(username) = lower($1)"

# GitLab checks the email first, then the username; a username is also a namespace path.
EMAIL_TAKEN = "SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1) AND id <> $2)"
USERNAME_TAKEN = """
SELECT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower($1) AND id <> $2)
    OR EXISTS (SELECT 1 FROM namespaces WHERE lower(full_path) = lower($1)
                                          AND (owner_id IS NULL OR owner_id <> $2))
"""

# Columns the administration API may set on a user.
USER_FIELDS = (
    "username", "name", "email", "is_admin", "can_create_group", "external", "private_profile",
    "projects_limit", "note", "bio", "location", "organization", "job_title", "public_email",
    "website_url", "password_digest", "confirmed_at", "bot", "bot_project_id", "bot_group_id",
    "state",
)

INSERT_USER_NAMESPACE = """
INSERT INTO namespaces (kind, name, path, full_path, owner_id, visibility)
VALUES ('user', $1, $2, $2, $3, 'public')
"""

RENAME_USER_NAMESPACE = """
UPDATE namespaces SET path = $2, full_path = $2, name = $3, full_name = $3
WHERE kind = 'user' AND owner_id = $1
"""

USER_NAMESPACE_ID = "SELECT id FROM namespaces WHERE kind = 'user' AND owner_id = $1"

DELETE_USER = "DELETE FROM users WHERE id = $1 RETURNING id"

# Groups whose only Owner is this user: GitLab refuses to delete such a user (409).
SOLE_OWNED_GROUPS = """
SELECT g.group_id FROM group_members g
WHERE g.user_id = $1 AND g.access_level = 50
  AND NOT EXISTS (SELECT 1 FROM group_members o
                  WHERE o.group_id = g.group_id AND o.access_level = 50 AND o.user_id <> $1)
"""

SET_USER_STATE = "UPDATE users SET state = $2, updated_at = now() WHERE id = $1 RETURNING *"

# Projects the user created in their own namespace (``projects_limit`` counts these).
PERSONAL_PROJECT_COUNT = """
SELECT count(*) FROM projects p JOIN namespaces n ON n.id = p.namespace_id
WHERE n.kind = 'user' AND n.owner_id = $1
"""

# Every membership a user holds, anywhere (a bot may hold only its own).
MEMBERSHIPS = """
SELECT 'project' AS kind, project_id AS source_id FROM project_members WHERE user_id = $1
UNION ALL
SELECT 'group', group_id FROM group_members WHERE user_id = $1
"""


async def by_id(conn: Conn, user_id: int) -> User | None:
    return User.from_optional(await conn.fetchrow(USER_BY_ID, user_id))


async def by_username(conn: Conn, username: str) -> User | None:
    return User.from_optional(await conn.fetchrow(USER_BY_USERNAME, username))


async def email_taken(conn: Conn, email: str, except_id: int = 0) -> bool:
    return await conn.fetchval(EMAIL_TAKEN, email, except_id)


async def username_taken(conn: Conn, username: str, except_id: int = 0) -> bool:
    return await conn.fetchval(USERNAME_TAKEN, username, except_id)


async def insert(conn: Conn, fields: dict[str, object]) -> User:
    """A user with the given columns (a subset of USER_FIELDS) and its personal namespace."""
    cols = [c for c in USER_FIELDS if c in fields]
    values = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    row = await conn.fetchrow(
        f"INSERT INTO users ({', '.join(cols)}) VALUES ({values}) RETURNING *",
        *(fields[c] for c in cols),
    )
    await conn.execute(INSERT_USER_NAMESPACE, row["name"], row["username"], row["id"])
    return User.from_row(row)


async def update(conn: Conn, user_id: int, fields: dict[str, object]) -> User:
    cols = [c for c in USER_FIELDS if c in fields]
    sets = "".join(f"{c} = ${i}, " for i, c in enumerate(cols, start=2))
    row = await conn.fetchrow(
        f"UPDATE users SET {sets}updated_at = now() WHERE id = $1 RETURNING *",
        user_id, *(fields[c] for c in cols),
    )
    if "username" in fields or "name" in fields:
        await conn.execute(RENAME_USER_NAMESPACE, user_id, row["username"], row["name"])
    return User.from_row(row)


async def delete(conn: Conn, user_id: int) -> bool:
    return await conn.fetchval(DELETE_USER, user_id) is not None


async def sole_owned_groups(conn: Conn, user_id: int) -> list[int]:
    return [r["group_id"] for r in await conn.fetch(SOLE_OWNED_GROUPS, user_id)]


async def set_state(conn: Conn, user_id: int, state: str) -> User | None:
    return User.from_optional(await conn.fetchrow(SET_USER_STATE, user_id, state))


async def namespace_id(conn: Conn, user_id: int) -> int | None:
    return await conn.fetchval(USER_NAMESPACE_ID, user_id)


async def personal_project_count(conn: Conn, user_id: int) -> int:
    return await conn.fetchval(PERSONAL_PROJECT_COUNT, user_id)


async def memberships(conn: Conn, user_id: int) -> list[tuple[str, int]]:
    return [(r["kind"], r["source_id"]) for r in await conn.fetch(MEMBERSHIPS, user_id)]


_ORDER = {"id": "id", "name": "name", "username": "username", "created_at": "created_at",
          "updated_at": "updated_at"}


async def list_users(
    conn: Conn, *, username: str | None = None, search: str | None = None,
    active: bool | None = None, blocked: bool | None = None, external: bool | None = None,
    admins: bool | None = None, humans: bool | None = None, without_bots: bool | None = None,
    search_email: bool = False, order_by: str = "id", sort: str = "desc", limit: int, offset: int,
) -> tuple[list[User], int]:
    where = Where()
    if username is not None:
        where.add(f"lower(username) = lower({where.arg(username)})")
    where.like(("name", "username", "email") if search_email else ("name", "username"), search)
    if active:
        where.add("state = 'active'")
    if blocked:
        where.add("state = 'blocked'")
    if external:
        where.add("external")
    if admins:
        where.add("is_admin")
    if humans or without_bots:
        where.add("NOT bot")
    order = f"{_ORDER.get(order_by, 'id')} {'ASC' if sort == 'asc' else 'DESC'}, id"
    rows, total = await page(conn, f"SELECT * FROM users WHERE {where.sql}", where.args, order,
                             limit, offset)
    return [User.from_row(r) for r in rows], total
