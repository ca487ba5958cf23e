"""Named SQL for personal (project, group) access tokens, deploy tokens and CI job tokens.

Tokens are found by the SHA-256 digest of their value; the value itself is never stored.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from gateway.db.identity.query import Where, page
from gateway.models import (
    AccessToken,
    DeployCredential,
    DeployToken,
    JobCredential,
    JobToken,
    PatCredential,
)

Conn = asyncpg.Connection

# --- lookups by digest (authentication) -----------------------------------------------------

FIND_PERSONAL_ACCESS_TOKEN = """
SELECT t.id AS token_id, t.token_digest, t.scopes, t.revoked,
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


async def find_personal_access_token(conn: Conn, digest: bytes) -> PatCredential | None:
    return PatCredential.from_optional(await conn.fetchrow(FIND_PERSONAL_ACCESS_TOKEN, digest))


async def find_deploy_token(conn: Conn, digest: bytes) -> DeployCredential | None:
    return DeployCredential.from_optional(await conn.fetchrow(FIND_DEPLOY_TOKEN, digest))


async def find_job_token(conn: Conn, digest: bytes) -> JobCredential | None:
    return JobCredential.from_optional(await conn.fetchrow(FIND_JOB_TOKEN, digest))


# --- personal, project and group access tokens ----------------------------------------------

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

INSERT_PAT = """
INSERT INTO personal_access_tokens (user_id, name, token_digest, scopes, expires_at, description,
                                    access_level, previous_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id
"""

REVOKE_PAT = """
UPDATE personal_access_tokens SET revoked = true WHERE id = $1 AND NOT revoked RETURNING id
"""

TOUCH_PAT = """
UPDATE personal_access_tokens SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '10 minutes')
"""


async def pat_by_id(conn: Conn, token_id: int) -> AccessToken | None:
    return AccessToken.from_optional(await conn.fetchrow(PAT_BY_ID, token_id))


async def insert_pat(
    conn: Conn, user_id: int, name: str, digest: bytes, scopes: list[str],
    expires_at: dt.date | None, description: str | None, access_level: int | None = None,
    previous_id: int | None = None,
) -> AccessToken:
    token_id = await conn.fetchval(INSERT_PAT, user_id, name, digest, scopes, expires_at,
                                   description, access_level, previous_id)
    return await pat_by_id(conn, token_id)  # type: ignore[return-value]


async def revoke_pat(conn: Conn, token_id: int) -> bool:
    """False when it was revoked already."""
    return await conn.fetchval(REVOKE_PAT, token_id) is not None


async def touch_pat(conn: Conn, token_id: int) -> None:
    await conn.execute(TOUCH_PAT, token_id)


async def list_pats(
    conn: Conn, *, user_id: int | None = None, bot_project_id: int | None = None,
    bot_group_id: int | None = None, revoked: bool | None = None, state: str | None = None,
    search: str | None = None, limit: int, offset: int,
) -> tuple[list[AccessToken], int]:
    where = Where()
    where.equals("t.user_id", user_id)
    where.equals("u.bot_project_id", bot_project_id)
    where.equals("u.bot_group_id", bot_group_id)
    where.equals("t.revoked", revoked)
    active = "(NOT t.revoked AND (t.expires_at IS NULL OR t.expires_at > current_date))"
    if state == "active":
        where.add(active)
    elif state == "inactive":
        where.add(f"NOT {active}")
    where.like(("t.name",), search)
    base = (f"SELECT {_PAT_COLUMNS} FROM personal_access_tokens t "
            f"JOIN users u ON u.id = t.user_id WHERE {where.sql}")
    rows, total = await page(conn, base, where.args, "id", limit, offset)
    return [AccessToken.from_row(r) for r in rows], total


# --- deploy tokens --------------------------------------------------------------------------

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
DELETE FROM deploy_tokens WHERE id = $1 AND (project_id = $2 OR group_id = $3) RETURNING id
"""

DEPLOY_TOKEN_IN = f"""
SELECT {_DEPLOY_COLUMNS} FROM deploy_tokens WHERE id = $1 AND (project_id = $2 OR group_id = $3)
"""


async def insert_deploy_token(
    conn: Conn, project_id: int | None, group_id: int | None, name: str, username: str | None,
    digest: bytes, scopes: list[str], expires_at: dt.datetime | None,
) -> DeployToken:
    return DeployToken.from_row(await conn.fetchrow(
        INSERT_DEPLOY_TOKEN, project_id, group_id, name, username, digest, scopes, expires_at))


async def deploy_token_in(conn: Conn, token_id: int, project_id: int | None,
                          group_id: int | None) -> DeployToken | None:
    return DeployToken.from_optional(
        await conn.fetchrow(DEPLOY_TOKEN_IN, token_id, project_id, group_id))


async def delete_deploy_token(conn: Conn, token_id: int, project_id: int | None,
                              group_id: int | None) -> bool:
    return await conn.fetchval(DELETE_DEPLOY_TOKEN, token_id, project_id, group_id) is not None


async def list_deploy_tokens(
    conn: Conn, *, project_id: int | None = None, group_id: int | None = None,
    active: bool | None = None, limit: int, offset: int,
) -> tuple[list[DeployToken], int]:
    where = Where()
    where.equals("project_id", project_id)
    where.equals("group_id", group_id)
    if active is not None:
        live = "(NOT revoked AND (expires_at IS NULL OR expires_at > now()))"
        where.add(live if active else f"NOT {live}")
    base = f"SELECT {_DEPLOY_COLUMNS} FROM deploy_tokens WHERE {where.sql}"
    rows, total = await page(conn, base, where.args, "id", limit, offset)
    return [DeployToken.from_row(r) for r in rows], total


# --- CI job tokens --------------------------------------------------------------------------

INSERT_JOB_TOKEN = """
INSERT INTO job_tokens (project_id, user_id, token_digest, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING *
"""

REVOKE_JOB_TOKEN = """
UPDATE job_tokens SET revoked = true WHERE id = $1 AND project_id = $2 RETURNING id
"""

_LIVE_JOB = "NOT revoked AND expires_at > now()"


async def insert_job_token(conn: Conn, project_id: int, user_id: int, digest: bytes,
                           expires_in: float) -> JobToken:
    return JobToken.from_row(
        await conn.fetchrow(INSERT_JOB_TOKEN, project_id, user_id, digest, float(expires_in)))


async def revoke_job_token(conn: Conn, token_id: int, project_id: int) -> bool:
    return await conn.fetchval(REVOKE_JOB_TOKEN, token_id, project_id) is not None


async def list_job_tokens(conn: Conn, project_id: int, *, limit: int, offset: int
                          ) -> tuple[list[JobToken], int]:
    """The project's job tokens that still work (to revoke one whose id was lost)."""
    base = f"SELECT * FROM job_tokens WHERE project_id = $1 AND {_LIVE_JOB}"
    rows, total = await page(conn, base, [project_id], "id", limit, offset)
    return [JobToken.from_row(r) for r in rows], total
