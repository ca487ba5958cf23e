"""Telling every gateway process that identity changed (PostgreSQL ``NOTIFY``).

Services call ``announce`` inside the transaction that changes a token, a user, a role or a
membership: PostgreSQL delivers the notification at commit, and not at all on rollback, to
every connection that listens on ``CHANNEL`` (``gateway.db.listen``).
"""

from __future__ import annotations

import asyncpg

from gateway.db.pool import Database

CHANNEL = "packgate_identity"

NOTIFY = "SELECT pg_notify($1, $2)"


async def announce(conn: asyncpg.Connection, what: str) -> None:
    """``what`` says what changed (for logs only; listeners drop every cached token)."""
    await conn.execute(NOTIFY, CHANNEL, what[:200])


async def send(db: Database, channel: str, payload: str) -> None:
    """A NOTIFY through the pool, as every change is sent (the listener's probe)."""
    async with db.connection() as conn:
        await conn.execute(NOTIFY, channel, payload)
