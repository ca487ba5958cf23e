"""Readiness: this instance can serve, because PostgreSQL (with this release's schema) and the
bucket answer. Asked by load balancers and Kubernetes every few seconds, on every instance.

The answer is kept for ``cache_seconds`` and one check runs at a time, so however often and
however many probes ask, each instance sends at most one query and one HeadBucket per
``cache_seconds``. Nothing on the upload or download path waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.db.migrate import schema_version
from gateway.db.pool import Database
from gateway.errors import ServiceUnavailable
from gateway.storage import ObjectStore

log = logging.getLogger("gateway.readiness")


class SchemaBehind(ServiceUnavailable):
    def __init__(self, found: int | None, needed: int) -> None:
        at = "not migrated" if found is None else f"at version {found}"
        super().__init__(
            f"the database schema is {at}, this release needs {needed}: run gateway migrate"
        )


class Readiness:
    def __init__(self, db: Database, store: ObjectStore, *, schema_needed: int,
                 cache_seconds: float = 1.0, timeout: float = 5.0) -> None:
        self._db = db
        self._store = store
        self._schema_needed = schema_needed
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._checked_at = -float("inf")
        self._error: ServiceUnavailable | None = None
        self._running: asyncio.Task[ServiceUnavailable | None] | None = None

    async def check(self) -> None:
        """Returns when ready; raises ServiceUnavailable naming what is not."""
        if time.monotonic() - self._checked_at >= self._cache_seconds:
            if self._running is None:
                self._running = asyncio.create_task(self._check_now())
            running = self._running
            # A probe that gives up must not cancel the check the others wait for.
            error = await asyncio.shield(running)
            if self._running is running:
                self._running = None
                self._error = error
                self._checked_at = time.monotonic()
        if self._error is not None:
            raise self._error

    async def _check_now(self) -> ServiceUnavailable | None:
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.gather(self._check_database(), self._store.check())
        except ServiceUnavailable as exc:
            return exc
        except TimeoutError:
            return ServiceUnavailable("PostgreSQL or object storage did not answer in time")
        except Exception:
            # Never leave every later probe waiting on a check that broke.
            log.exception("readiness check failed")
            return ServiceUnavailable("the readiness check failed")
        return None

    async def _check_database(self) -> None:
        async with self._db.connection() as conn:
            found = await schema_version(conn)
        if found is None or found < self._schema_needed:
            raise SchemaBehind(found, self._schema_needed)
