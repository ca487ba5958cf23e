"""Setting an instance up directly on a connection, without a caller to authorize: the
administrator and its token (``gateway admin bootstrap``), the demo project of ``gateway dev``,
and the arrangements of tests."""

from __future__ import annotations

import asyncpg

from gateway.db.identity import groups as group_queries
from gateway.db.identity import members as member_queries
from gateway.db.identity import projects as project_queries
from gateway.db.identity import users as user_queries
from gateway.enums import OWNER
from gateway.identity import limits
from gateway.identity.tokens import issue_personal_access_token
from gateway.models import Group, Project, User

ADMIN_USERNAME = "root"


async def ensure_admin(conn: asyncpg.Connection) -> User:
    """The administrator, created on first use (GitLab's first user is ``root`` too)."""
    user = await user_queries.by_username(conn, ADMIN_USERNAME)
    if user is None:
        user = await user_queries.insert(conn, {
            "username": ADMIN_USERNAME, "name": "Administrator", "email": "admin@example.com",
            "is_admin": True,
        })
    return user


async def add_user(conn: asyncpg.Connection, username: str, *, admin: bool = False,
                   **fields: object) -> User:
    return await user_queries.insert(conn, {
        "username": username, "name": username.title(), "email": f"{username}@example.com",
        "is_admin": admin, **fields,
    })


async def bootstrap(conn: asyncpg.Connection, token_name: str = "bootstrap") -> str:
    """Ensure the administrator exists and return a new ``api`` token for it (the maximum
    lifetime, as any token GitLab makes without an expiry)."""
    async with conn.transaction():
        admin = await ensure_admin(conn)
        issued = await issue_personal_access_token(
            conn, admin.id, token_name, ["api"], limits.max_token_expiry(365))
    return issued.token


async def ensure_group(conn: asyncpg.Connection, path: str, *, owner_id: int | None,
                       visibility: str = "private", parent: Group | None = None) -> Group:
    full_path = f"{parent.full_path}/{path}" if parent else path
    group = await group_queries.namespace_by_full_path(conn, full_path)
    if group is None:
        group = await group_queries.insert(conn, path, path, visibility, "",
                                           parent.id if parent else None)
        if owner_id is not None:
            await member_queries.add(conn, "group", group.id, owner_id, OWNER, None, None)
    return group


async def ensure_project(
    conn: asyncpg.Connection, group_path: str, project_path: str, *, owner_id: int,
    visibility: str = "private",
) -> Project:
    """A group and a project in it, created if missing (the `gateway dev` demo)."""
    async with conn.transaction():
        group = await ensure_group(conn, group_path, owner_id=owner_id, visibility=visibility)
        project = await project_queries.find_in_namespace(conn, group.id, project_path)
        if project is None:
            project = await project_queries.insert(
                conn, group.id, {"name": project_path, "path": project_path,
                                 "visibility": visibility}, owner_id)
    return project


async def add_project(conn: asyncpg.Connection, namespace_id: int, path: str, *,
                      visibility: str = "private") -> Project:
    return await project_queries.insert(
        conn, namespace_id, {"name": path, "path": path, "visibility": visibility}, None)
