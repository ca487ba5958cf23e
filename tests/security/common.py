"""What the security tests share: headers, GitLab's bodies, and arranging bots and groups."""

from __future__ import annotations

import datetime as dt

from gateway.identity import tokens
from tests.conftest import World

PLAIN_401 = {"message": "401 Unauthorized"}
FORBIDDEN = {"message": "403 Forbidden"}
REVOKED = {"error": "invalid_token",
           "error_description": "Token was revoked. You have to re-authorize from the user."}
PROJECT_NOT_FOUND = {"message": "404 Project Not Found"}
RECORD_NOT_FOUND = {"message": "404 Not found"}
USER_NOT_FOUND = {"message": "404 User Not Found"}


def h(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


def file_url(pid: object, name: str = "f.txt") -> str:
    return f"/api/v4/projects/{pid}/packages/generic/pkg/1.0/{name}"


async def project_bot(world: World, project_id: int, level: int, *, scopes: list[str] | None = None
                      ) -> tuple[str, int, int]:
    """A project access token with ``level``: (token, token id, bot user id)."""
    issued = await tokens.issue_resource_token(
        world.conn, "project", project_id, name="bot", scopes=scopes or ["api"],
        access_level=level, expires_at=dt.date.today() + dt.timedelta(days=30),
        description=None, created_by=None, host="example.com")
    return issued.token, issued.record.id, issued.record.user_id


async def group_bot(world: World, group_id: int, level: int) -> tuple[str, int, int]:
    issued = await tokens.issue_resource_token(
        world.conn, "group", group_id, name="gbot", scopes=["api"], access_level=level,
        expires_at=dt.date.today() + dt.timedelta(days=30), description=None, created_by=None,
        host="example.com")
    return issued.token, issued.record.id, issued.record.user_id


async def acme_id(world: World) -> int:
    return await world.conn.fetchval("SELECT id FROM namespaces WHERE full_path = 'acme'")


async def user_id(world: World, username: str) -> int:
    return await world.conn.fetchval("SELECT id FROM users WHERE username = $1", username)


async def group_member(world: World, group_id: int, username: str, level: int) -> None:
    await world.conn.execute(
        "INSERT INTO group_members (group_id, user_id, access_level) VALUES ($1, $2, $3)",
        group_id, await user_id(world, username), level)


async def other_project(world: World, group: str = "else", name: str = "where") -> int:
    return await world.project(group, name)

