"""Named SQL for resumable upload sessions (``gateway.resumable``)."""

from __future__ import annotations

import asyncpg
import orjson

Conn = asyncpg.Connection

# Everything but the tail (up to 5 MiB), which only an append reads.
_COLUMNS = """
id, project_id, package_name, package_version, file_name, file_path, status, creator_id,
upload_length, upload_offset, object_key, upload_id, parts, length(tail) AS tail_size,
hash_state, hash_engine, metadata, state, package_file_id, created_at, expires_at
"""

INSERT_SESSION = f"""
INSERT INTO upload_sessions (id, project_id, package_name, package_version, file_name,
                             file_path, status, creator_id, upload_length, object_key,
                             hash_state, hash_engine, metadata, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
        now() + make_interval(secs => $14))
RETURNING {_COLUMNS}
"""

FIND_SESSION = f"SELECT {_COLUMNS} FROM upload_sessions WHERE id = $1 AND project_id = $2"

TAIL = "SELECT tail FROM upload_sessions WHERE id = $1"

# Serializes appends to one session; held until the holding transaction ends (PgBouncer's
# transaction pooling keeps a transaction on one server connection).
TRY_SESSION_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('upload/' || $1, 17))"

SET_UPLOAD_ID = "UPDATE upload_sessions SET upload_id = $2, updated_at = now() WHERE id = $1"

# Progress: the parts so far, the tail, the offset and the hash state change together.
RECORD_PROGRESS = """
UPDATE upload_sessions
SET parts = $2, tail = $3, upload_offset = $4, hash_state = $5,
    upload_length = coalesce(upload_length, $6), updated_at = now(),
    expires_at = now() + make_interval(secs => $7)
WHERE id = $1 AND state = 0
"""

SET_LENGTH = """
UPDATE upload_sessions SET upload_length = $2, updated_at = now()
WHERE id = $1 AND upload_length IS NULL
"""

MARK_COMMITTED = """
UPDATE upload_sessions
SET state = 1, package_file_id = $2, tail = '', parts = '{}', upload_offset = $3,
    upload_length = $3, updated_at = now()
WHERE id = $1
"""

DELETE_SESSION = "DELETE FROM upload_sessions WHERE id = $1"

# Expired sessions, and open ones whose project is gone.
EXPIRED_SESSIONS = """
SELECT id, object_key, upload_id, state FROM upload_sessions s
WHERE s.expires_at < now()
   OR (s.state = 0 AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = s.project_id))
ORDER BY s.expires_at
LIMIT $1
"""

CLAIM_SESSION = """
SELECT id, object_key, upload_id, state FROM upload_sessions WHERE id = $1 FOR UPDATE SKIP LOCKED
"""


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


async def insert_session(
    conn: Conn, session_id: str, project_id: int, name: str, version: str, file_name: str,
    path: str | None, status: str | None, creator_id: int | None, length: int | None,
    object_key: str, hash_state: bytes, hash_engine: str, metadata: dict[str, str],
    lifetime_seconds: float,
) -> asyncpg.Record:
    return await conn.fetchrow(
        INSERT_SESSION, session_id, project_id, name, version, file_name, path, status,
        creator_id, length, object_key, hash_state, hash_engine, _json(metadata),
        float(lifetime_seconds),
    )


async def find_session(conn: Conn, session_id: str, project_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_SESSION, session_id, project_id)


async def tail(conn: Conn, session_id: str) -> bytes:
    return await conn.fetchval(TAIL, session_id) or b""


async def try_session_lock(conn: Conn, session_id: str) -> bool:
    return await conn.fetchval(TRY_SESSION_LOCK, session_id)


async def set_upload_id(conn: Conn, session_id: str, upload_id: str) -> None:
    await conn.execute(SET_UPLOAD_ID, session_id, upload_id)


async def record_progress(
    conn: Conn, session_id: str, parts: list[dict[str, object]], tail_bytes: bytes,
    offset: int, hash_state: bytes, length: int | None, lifetime_seconds: float,
) -> None:
    await conn.execute(RECORD_PROGRESS, session_id, _json(parts), tail_bytes, offset,
                       hash_state, length, float(lifetime_seconds))


async def set_length(conn: Conn, session_id: str, length: int) -> None:
    await conn.execute(SET_LENGTH, session_id, length)


async def mark_committed(conn: Conn, session_id: str, file_id: int, size: int) -> None:
    await conn.execute(MARK_COMMITTED, session_id, file_id, size)


async def delete_session(conn: Conn, session_id: str) -> None:
    await conn.execute(DELETE_SESSION, session_id)


async def expired_sessions(conn: Conn, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(EXPIRED_SESSIONS, limit)


async def claim_session(conn: Conn, session_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(CLAIM_SESSION, session_id)


def decode_json(value: object) -> object:
    """asyncpg hands jsonb over as text."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
