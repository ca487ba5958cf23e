"""Named SQL for web UI sessions: found by the digest of the browser's session id."""

from __future__ import annotations

import asyncpg

from gateway.models import PatCredential

Conn = asyncpg.Connection

INSERT_SESSION = """
INSERT INTO ui_sessions (id_digest, token_id, expires_at)
VALUES ($1, $2, now() + make_interval(hours => $3))
"""

# The session's token and user, with the columns authentication reads of a token
# (``tokens.FIND_PERSONAL_ACCESS_TOKEN``'s, so the same checks apply).
FIND_SESSION_TOKEN = """
SELECT t.id AS token_id, t.token_digest, t.scopes, t.revoked,
       t.expires_at IS NOT NULL AND t.expires_at <= current_date AS expired,
       t.last_used_at IS NULL OR t.last_used_at < now() - interval '10 minutes' AS touch_due,
       u.id AS user_id, u.username, u.is_admin, u.state, u.external, u.bot
FROM ui_sessions s
JOIN personal_access_tokens t ON t.id = s.token_id
JOIN users u ON u.id = t.user_id
WHERE s.id_digest = $1 AND s.expires_at > now()
"""

DELETE_SESSION = "DELETE FROM ui_sessions WHERE id_digest = $1"
# Bounded, so a sign-in never waits on a large clean-up.
DELETE_EXPIRED = """
DELETE FROM ui_sessions WHERE id_digest IN (
    SELECT id_digest FROM ui_sessions WHERE expires_at <= now() LIMIT 1000
)
"""


async def insert(conn: Conn, id_digest: bytes, token_id: int, hours: int) -> None:
    await conn.execute(INSERT_SESSION, id_digest, token_id, hours)


async def find_token(conn: Conn, id_digest: bytes) -> PatCredential | None:
    return PatCredential.from_optional(await conn.fetchrow(FIND_SESSION_TOKEN, id_digest))


async def delete(conn: Conn, id_digest: bytes) -> None:
    await conn.execute(DELETE_SESSION, id_digest)


async def delete_expired(conn: Conn) -> None:
    await conn.execute(DELETE_EXPIRED)
