"""The object deletion queue: removes from the bucket the objects whose rows are gone.

Rows are deleted and their objects queued in one transaction (the schema's trigger on
``package_files``), so a committed delete always leaves a queue entry and a rolled-back one
leaves none. Every gateway runs one worker: it claims due entries with ``FOR UPDATE SKIP
LOCKED`` (instances never wait for each other nor delete the same entry twice), deletes each
object, then its entry. A failed delete stays queued with an exponential backoff; a crash rolls
the claim back and another worker (or this one, restarted) picks the entry up again. Deleting an
object that is already gone succeeds, so doing it twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.storage import ObjectStore

log = logging.getLogger("gateway.deletions")


class DeletionWorker:
    """Drains ``object_deletions``. ``wake()`` after a delete frees the bucket at once;
    otherwise the queue is polled every ``idle_interval`` seconds (for deletes made by other
    instances, and for retries)."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        *,
        idle_interval: float = 10.0,
        batch: int = 100,
        concurrency: int = 16,
        first_backoff: float = 1.0,
        max_backoff: float = 300.0,
        delete_timeout: float = 120.0,
    ) -> None:
        self._db = db
        self._store = store
        self.idle_interval = idle_interval
        self.batch = batch
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.delete_timeout = delete_timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        # Objects deleted, and attempts that failed and were postponed (metrics).
        self.deleted = 0
        self.failed = 0

    def wake(self) -> None:
        """Drain now rather than at the next poll (called after a delete commits)."""
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Seconds before retrying an entry that has failed ``attempts`` times."""
        return min(self.max_backoff, self.first_backoff * 2 ** max(0, attempts - 1))

    async def drain_once(self) -> int:
        """Process one batch of due entries; returns how many were claimed."""
        async with self._db.transaction() as conn:
            entries = await q.claim_object_deletions(conn, self.batch)
            if not entries:
                return 0
            results = await asyncio.gather(
                *(self._delete(entry["object_key"]) for entry in entries)
            )
            for entry, error in zip(entries, results, strict=True):
                if error is None:
                    await q.finish_object_deletion(conn, entry["id"])
                    self.deleted += 1
                else:
                    self.failed += 1
                    attempts = entry["attempts"] + 1
                    delay = self.backoff(attempts)
                    log.warning("deleting object %s failed (attempt %d), retry in %.0fs: %s",
                                entry["object_key"], attempts, delay, error)
                    await q.postpone_object_deletion(conn, entry["id"], delay, error)
        return len(entries)

    async def _delete(self, key: str) -> str | None:
        """None when the object is gone, else why not."""
        async with self._slots:
            try:
                await asyncio.wait_for(self._store.delete(key), self.delete_timeout)
            except Exception as exc:  # any failure is retried later
                return f"{type(exc).__name__}: {exc}"
        return None

    async def _seconds_until_due(self) -> float:
        async with self._db.connection() as conn:
            due = await q.next_object_deletion_due(conn)
        return self.idle_interval if due is None else min(self.idle_interval, due)

    async def run(self) -> None:
        """Drain until cancelled; never stops on an error (the database or S3 may be down)."""
        while True:
            self._wake.clear()
            try:
                while await self.drain_once() >= self.batch:
                    pass  # a full batch: more may be due
                # Entries due but locked by another instance would make this spin: a floor.
                pause = max(0.5, await self._seconds_until_due())
            except Exception as exc:
                log.warning("object deletion queue: %s", exc)
                pause = self.idle_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DeletionWorker]:
        """Run in the background for the duration of the block."""
        task = asyncio.create_task(self.run(), name="object-deletions")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
