"""Stale pending uploads: aborted by a background task on every instance and by
``gateway admin sweep-uploads``.

An upload in progress keeps its pending row's heartbeat fresh. A row whose heartbeat is older
than ``GATEWAY_STALE_UPLOAD_SECONDS`` belongs to a gateway that died or lost its way; the
sweeper aborts its multipart upload (also one whose id was never recorded), deletes its object
unless a committed file points at it, and only then drops the row, so a sweep that fails half
way is simply repeated.

Each row is swept in a transaction of its own that first takes a transaction-scoped advisory
lock: at any moment at most one instance is sweeping, an instance that finds the lock taken
leaves the round to the one holding it, and no lock outlives its transaction (PgBouncer's
transaction pooling may run the next transaction on another server connection). The row is
held (``FOR UPDATE``) while its bytes are removed, so a late commit of the same upload waits
and then finds the row gone.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import Settings
from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import ServiceUnavailable
from gateway.resumable.sweep import sweep_expired_sessions
from gateway.storage import ObjectStore, StorageUnavailable

log = logging.getLogger("gateway.sweeper")

# Rows looked at per sweep; the next sweep takes the rest.
_BATCH = 500


@dataclass(slots=True)
class SweepReport:
    dry_run: bool = False
    busy: bool = False  # another instance holds the sweep lock
    stale: list[str] = field(default_factory=list)  # object keys found stale
    swept: list[str] = field(default_factory=list)  # ... and cleaned, rows dropped
    failed: list[str] = field(default_factory=list)  # ... store unreachable, kept for later
    # Resumable upload sessions past their expiry (gateway.resumable.sweep).
    sessions: list[str] = field(default_factory=list)
    sessions_failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.busy and not self.swept and not self.failed:
            return "another gateway is sweeping right now; nothing done"
        if self.dry_run:
            lines = [f"{len(self.stale)} stale pending upload(s) would be aborted"]
            lines += [f"  {key}" for key in self.stale]
            lines.append(f"{len(self.sessions)} expired upload session(s) would be aborted")
            return "\n".join(lines)
        text = f"{len(self.swept)} stale pending upload(s) aborted"
        if self.failed:
            text += f", {len(self.failed)} left for the next sweep (object store unavailable)"
        if self.busy:
            text += "; another gateway took over the rest"
        text += f"; {len(self.sessions)} expired upload session(s) aborted"
        if self.sessions_failed:
            text += f", {len(self.sessions_failed)} left for the next sweep"
        return text


async def sweep_stale_uploads(
    db: Database, store: ObjectStore, stale_seconds: float, *, dry_run: bool = False
) -> SweepReport:
    """Abort every pending upload whose heartbeat is older than ``stale_seconds``.

    Raises DatabaseUnavailable when PostgreSQL cannot be reached; a row whose bytes cannot be
    removed (object store down) stays for the next sweep.
    """
    report = SweepReport(dry_run=dry_run)
    async with db.connection() as conn:
        rows = await q.stale_pending_uploads(conn, stale_seconds, _BATCH)
    report.stale = [r["object_key"] for r in rows]
    # Sessions first: each under its own lock, whoever else is sweeping pending uploads.
    report.sessions, report.sessions_failed = await sweep_expired_sessions(
        db, store, dry_run=dry_run)
    if dry_run:
        return report
    for key in report.stale:
        try:
            outcome = await _sweep_one(db, store, key, stale_seconds)
        except StorageUnavailable as exc:
            log.warning("could not sweep %s now: %s", key, exc.message)
            report.failed.append(key)
            continue
        if outcome is _Outcome.BUSY:
            report.busy = True
            break
        if outcome is _Outcome.SWEPT:
            report.swept.append(key)
    if report.swept:
        log.info("swept stale uploads", extra={"count": len(report.swept)})
    return report


class _Outcome(enum.Enum):
    SWEPT = "swept"
    GONE = "gone"  # refreshed, committed, dropped or swept by another meanwhile
    BUSY = "busy"  # another instance holds the sweep lock


async def _sweep_one(db: Database, store: ObjectStore, key: str, stale_seconds: float) -> _Outcome:
    """One row in one transaction, under the sweep lock; StorageUnavailable rolls it back."""
    async with db.transaction() as conn:
        if not await q.try_sweep_lock(conn):
            return _Outcome.BUSY
        row = await q.claim_stale_pending_upload(conn, key, stale_seconds)
        if row is None:
            return _Outcome.GONE
        await _remove_bytes(conn, store, key, row["upload_id"])
        await q.drop_pending_upload(conn, key)
    return _Outcome.SWEPT


async def _remove_bytes(conn: q.Conn, store: ObjectStore, key: str, upload_id: str | None) -> None:
    # A gateway that died between CreateMultipartUpload and recording its id left an upload
    # that only a listing finds.
    upload_ids = {upload_id} if upload_id else set()
    upload_ids |= {u.upload_id for u in await store.list_open_uploads(prefix=key) if u.key == key}
    for uid in upload_ids:
        await store.abort_upload(key, uid)
    if not await q.object_key_is_committed(conn, key):
        await store.delete(key)


def sweep_interval(stale_seconds: float) -> float:
    """How often each instance looks: a few times per stale window, at most once a minute."""
    return max(0.5, min(60.0, stale_seconds / 4))


async def run_sweeper(
    db: Database,
    store: ObjectStore,
    stale_seconds: float,
    on_report: Callable[[SweepReport | None], None] | None = None,
) -> None:
    """Sweep forever; outages are logged and the next round tries again. ``on_report`` gets
    each round's report, or None for a round that could not run (the metrics count them)."""
    interval = sweep_interval(stale_seconds)
    while True:
        # Jitter keeps instances started together from contending for the lock each round.
        await asyncio.sleep(interval * random.uniform(0.8, 1.2))
        report: SweepReport | None = None
        try:
            report = await sweep_stale_uploads(db, store, stale_seconds)
        except ServiceUnavailable as exc:
            log.warning("sweep skipped: %s", exc.message)
        except Exception:
            log.exception("sweep failed")
        if on_report is not None:
            on_report(report)


async def sweep_once(settings: Settings, *, dry_run: bool = False) -> str:
    """One sweep with its own connections (``gateway admin sweep-uploads``); the report."""
    from gateway.storage.s3 import S3Store

    async with Database.open(settings) as db, S3Store.open(settings) as store:
        report = await sweep_stale_uploads(
            db, store, settings.stale_upload_seconds, dry_run=dry_run
        )
    return str(report)
