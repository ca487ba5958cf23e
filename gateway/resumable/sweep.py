"""Expired and abandoned upload sessions, aborted with nothing left in S3.

A session that nobody appended to for ``GATEWAY_RESUMABLE_UPLOAD_SECONDS`` (or whose project is
gone) is removed by the instances' sweeper (and by ``gateway admin sweep-uploads``): its
multipart upload is aborted (also one started by a gateway that died before recording its
id, which only a listing finds), its object deleted unless a committed file points at it, and
only then its row, in one transaction under the session's own lock, so an append in progress
is never swept from under its feet and a sweep that fails half way is simply repeated.
"""

from __future__ import annotations

import logging

from gateway.db import packages as pq
from gateway.db import upload_sessions as q
from gateway.db.pool import Database
from gateway.storage import ObjectStore, StorageUnavailable

log = logging.getLogger("gateway.resumable")

_BATCH = 200


async def sweep_expired_sessions(db: Database, store: ObjectStore, *,
                                 dry_run: bool = False) -> tuple[list[str], list[str]]:
    """(swept, failed) session ids; with ``dry_run`` the ones that would be swept."""
    async with db.connection() as conn:
        rows = await q.expired_sessions(conn, _BATCH)
    ids = [r["id"] for r in rows]
    if dry_run:
        return ids, []
    swept: list[str] = []
    failed: list[str] = []
    for session_id in ids:
        try:
            if await _sweep_one(db, store, session_id):
                swept.append(session_id)
        except StorageUnavailable as exc:
            log.warning("could not sweep upload session %s now: %s", session_id, exc.message)
            failed.append(session_id)
    if swept:
        log.info("swept expired upload sessions", extra={"count": len(swept)})
    return swept, failed


async def _sweep_one(db: Database, store: ObjectStore, session_id: str) -> bool:
    async with db.transaction() as conn:
        if not await q.try_session_lock(conn, session_id):
            return False  # an append is running: not abandoned
        row = await q.claim_expired_session(conn, session_id)
        if row is None:
            return False  # appended to (expiry moved) or swept meanwhile
        if row["state"] == 0:
            await discard(conn, store, session_id, row["object_key"], row["upload_id"])
        else:
            await q.delete_session(conn, session_id)
    return True


async def discard(conn: q.Conn, store: ObjectStore, session_id: str, key: str,
                  upload_id: str | None) -> None:
    """An open session and everything of it in S3: its multipart upload (also one started by
    a gateway that died before recording its id, which only a listing finds), its object
    unless a committed file points at it, and only then its row (a failure half way leaves
    the row, so the next attempt finds the rest). The caller holds the session's lock."""
    upload_ids = {upload_id} if upload_id else set()
    upload_ids |= {u.upload_id for u in await store.list_open_uploads(prefix=key)
                   if u.key == key}
    for one in upload_ids:
        await store.abort_upload(key, one)
    if not await pq.object_key_is_committed(conn, key):
        await store.delete(key)
    await q.delete_session(conn, session_id)
