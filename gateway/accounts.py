"""Users, projects and tokens: the services behind bootstrap, `gateway dev` and the admin API."""

from __future__ import annotations

import datetime as dt

import asyncpg

from gateway import auth
from gateway.db import identity

ADMIN_USERNAME = "root"


async def ensure_admin(conn: asyncpg.Connection) -> asyncpg.Record:
    """The administrator, created on first use (GitLab's first user is ``root`` too)."""
    user = await identity.find_user_by_username(conn, ADMIN_USERNAME)
    if user is None:
        user = await identity.insert_user(
            conn, ADMIN_USERNAME, "Administrator", "admin@example.com", is_admin=True
        )
    return user


async def create_personal_access_token(
    conn: asyncpg.Connection,
    user_id: int,
    name: str,
    scopes: list[str],
    expires_at: dt.date | None = None,
    description: str | None = None,
) -> tuple[str, asyncpg.Record]:
    """A new token for ``user_id``: the plaintext (show it once) and the stored row."""
    token, digest = auth.new_token(auth.PAT_PREFIX)
    row = await conn.fetchrow(
        identity.INSERT_PERSONAL_ACCESS_TOKEN, user_id, name, digest, scopes, expires_at,
        description,
    )
    return token, row


async def bootstrap(conn: asyncpg.Connection, token_name: str = "bootstrap") -> str:
    """Ensure the administrator exists and return a new ``api`` token for it."""
    async with conn.transaction():
        admin = await ensure_admin(conn)
        token, _ = await create_personal_access_token(conn, admin["id"], token_name, ["api"])
    return token


async def ensure_project(
    conn: asyncpg.Connection, group_path: str, project_path: str, *, owner_id: int,
    visibility: str = "private",
) -> asyncpg.Record:
    """A group and a project in it, created if missing (the `gateway dev` demo)."""
    async with conn.transaction():
        group = await identity.find_namespace_by_full_path(conn, group_path)
        if group is None:
            group = await conn.fetchrow(
                identity.INSERT_GROUP, group_path, group_path, group_path, None, visibility, ""
            )
            await conn.execute(identity.INSERT_GROUP_MEMBER_IF_MISSING, group["id"], owner_id, 50)
        project = await conn.fetchrow(
            identity.FIND_PROJECT_IN_NAMESPACE, group["id"], project_path
        )
        if project is None:
            project = await conn.fetchrow(
                identity.INSERT_PROJECT, group["id"], project_path, project_path, "",
                visibility, True, owner_id,
            )
    return project


async def mint_job_token(
    conn: asyncpg.Connection, project_id: int, user_id: int, expires_in: int
) -> tuple[str, asyncpg.Record]:
    token, digest = auth.new_token(auth.JOB_PREFIX)
    row = await conn.fetchrow(identity.INSERT_JOB_TOKEN, project_id, user_id, digest, expires_in)
    return token, row
