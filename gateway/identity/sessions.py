"""Web UI sessions: a browser signs in with a personal access token and from then on carries
only a random session id.

The token is checked once, as the API checks it, and then forgotten: the session row names
the token by id, and the id's SHA-256 digest is all that is stored of the session id. Every
request is authorized as that token (``Authenticator.authenticate_session``), so a revoked,
expired or blocked token, or a demoted user, is honoured at once, as on the API.
"""

from __future__ import annotations

import hashlib
import secrets

from gateway.auth import Principal
from gateway.db.identity import sessions as q
from gateway.db.pool import Database
from gateway.models import PatCredential

# 256 bits: a session id cannot be guessed.
_ID_BYTES = 32


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(b"packgate-ui-session:" + session_id.encode()).digest()


async def start(db: Database, who: Principal, hours: int) -> str:
    """A new session for the token ``who`` signed in with; returns the id for the cookie."""
    if who.kind != "user" or who.token_id is None:
        raise ValueError("only a personal (project, group) access token signs in")
    session_id = secrets.token_urlsafe(_ID_BYTES)
    async with db.connection() as conn:
        await q.delete_expired(conn)
        await q.insert(conn, _digest(session_id), who.token_id, hours)
    return session_id


async def token_of(db: Database, session_id: str) -> PatCredential | None:
    """The token behind a live session, or None (unknown, expired, or its token deleted)."""
    if not session_id or len(session_id) > 100:
        return None
    async with db.connection() as conn:
        return await q.find_token(conn, _digest(session_id))


async def end(db: Database, session_id: str) -> None:
    async with db.connection() as conn:
        await q.delete(conn, _digest(session_id))
