"""The measured operations: HTTP requests to a serving gateway, the commit and the background
scans run directly on the database, and the statements each HTTP operation costs (counted by
pg_stat_statements)."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg

from benchmarks.metadata.fill import Filled
from benchmarks.metadata.plans import STALE_SECONDS
from gateway.config import Settings
from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.hashing import Digests
from gateway.naming import FileTarget
from gateway.packages.commit import commit_file
from gateway.storage.memory import NullStore
from gateway.uploads import StoredObject


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    concurrency: int = 1
    statements: float | None = None  # per operation, from pg_stat_statements
    db_ms: float | None = None  # PostgreSQL's execution time per operation, all statements
    errors: list[str] = field(default_factory=list)

    def quantile(self, share: float) -> float:
        """Milliseconds at this share of the sorted latencies (nan when there are none)."""
        values = sorted(self.latencies)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(share * len(values)))] * 1000

    @property
    def p50(self) -> float:
        return self.quantile(0.5)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)


async def timed(name: str, count: int, concurrency: int,
                one: Callable[[int], Awaitable[str | None]]) -> Result:
    """``count`` calls of ``one(i)`` from ``concurrency`` workers; ``one`` returns None when the
    answer was the expected one, else what was wrong (kept, not timed)."""
    result = Result(name, concurrency=concurrency)
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:
            start = time.perf_counter()
            error = await one(i)
            elapsed = time.perf_counter() - start
            if error is None:
                result.latencies.append(elapsed)
            else:
                result.errors.append(error)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def interleaved(specs: list[tuple[str, Callable[[int], Awaitable[str | None]]]],
                      rounds: int) -> dict[str, Result]:
    """``rounds`` rounds of one call of each spec in turn, one at a time."""
    results = {name: Result(name) for name, _ in specs}
    for i in range(rounds):
        for name, one in specs:
            start = time.perf_counter()
            error = await one(i)
            elapsed = time.perf_counter() - start
            if error is None:
                results[name].latencies.append(elapsed)
            else:
                results[name].errors.append(error)
    return results


class Statements:
    """Statements the gateway runs per operation: pg_stat_statements' calls, reset before."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def available(self) -> bool:
        try:
            await self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await self.conn.execute("SELECT pg_stat_statements_reset()")
        except asyncpg.PostgresError:
            return False
        return True

    async def reset(self) -> None:
        await self.conn.execute("SELECT pg_stat_statements_reset()")

    async def calls(self) -> tuple[int, float]:
        """Statements run since the reset, and their execution time in ms, together."""
        row = await self.conn.fetchrow("""
            SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(total_exec_time), 0) AS ms
            FROM pg_stat_statements
            WHERE query NOT ILIKE '%pg_stat_statements%'
              AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        """)
        return row["calls"], row["ms"]


@dataclass
class Http:
    """The gateway as clients see it."""

    session: aiohttp.ClientSession
    base: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.token}

    def expect(self, method: str, path: str, status: int,
               body: bytes | None = None) -> Callable[[int], Awaitable[str | None]]:
        async def one(_: int) -> str | None:
            async with self.session.request(method, self.base + path, headers=self.headers,
                                            data=body, allow_redirects=False) as resp:
                await resp.read()
                return None if resp.status == status else f"{method} {path}: {resp.status}"
        return one


def file_path(project_id: int, name: str, version: str, file_name: str) -> str:
    return f"/api/v4/projects/{project_id}/packages/generic/{name}/{version}/{file_name}"


async def table_sizes(conn: asyncpg.Connection, tables: tuple[str, ...]) -> list[tuple]:
    """(table, rows, heap bytes, index bytes) of each table, after the fill."""
    return [tuple(r) for r in await conn.fetch("""
        SELECT c.relname, c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid)
        FROM pg_class c WHERE c.relname = ANY($1::text[]) AND c.relkind = 'r'
        ORDER BY pg_total_relation_size(c.oid) DESC
    """, list(tables))]


async def sample_files(conn: asyncpg.Connection, count: int) -> list[str]:
    """Download paths of ``count`` files picked at random over the whole table."""
    top = await conn.fetchval("SELECT max(id) FROM package_files")
    ids = random.Random(7).sample(range(1, top + 1), min(count * 2, top))
    rows = await conn.fetch("""
        SELECT p.project_id, p.name, p.version, f.file_name FROM package_files f
        JOIN packages p ON p.id = f.package_id WHERE f.id = ANY($1::bigint[])
    """, ids)
    return [file_path(r["project_id"], r["name"], r["version"], r["file_name"])
            for r in rows][:count]


async def deletable_packages(conn: asyncpg.Connection, f: Filled, count: int) -> list[int]:
    """Packages of normal projects, spread over the table, to delete one by one."""
    return [r["id"] for r in await conn.fetch("""
        SELECT id FROM packages WHERE id > $1 AND status = 0 AND id % 97 = 3
        ORDER BY id DESC LIMIT $2
    """, f.sizes.big_packages, count)]


async def measure_commits(settings: Settings, f: Filled, count: int,
                          concurrency: int) -> Result:
    """The commit itself (``gateway.packages.commit.commit_file``: advisory lock, pending row,
    package, duplicate policy, file row) from ``concurrency`` tasks, each on a connection of its
    own, into new versions of the big project. The pending row is made first, untimed."""
    store = NullStore()
    run = uuid.uuid4().hex[:8]
    async with Database.open(settings.with_overrides(db_pool_max=concurrency)) as db:
        async def one(i: int) -> str | None:
            key = f"packages/bench/{run}-{i}-{uuid.uuid4().hex[:6]}"
            async with db.connection() as conn:
                await q.insert_pending_upload(conn, key, "bench", f.big_project_id)
            # Digests of bytes of their own: one shared sha256 would queue every commit on the
            # same content lock (deduplication), which different files never meet.
            stored = StoredObject(key, 1024, Digests(os.urandom(16).hex(), os.urandom(20).hex(),
                                                     os.urandom(32).hex()))
            start = time.perf_counter()
            # A new version every 4 files: both the create and the add-to paths are taken.
            target = FileTarget(f"commit-{run}", f"1.{i // 4}", f"file-{i % 4}-{key[-6:]}.bin")
            await commit_file(db, store, f.big_project_id, target, stored, status=None,
                              creator_id=f.user_id)
            latencies.append(time.perf_counter() - start)
            return None

        latencies: list[float] = []
        await timed("warm", concurrency, concurrency, one)  # every connection made
        latencies.clear()
        result = await timed("upload commit (in the gateway's service)", count, concurrency,
                             one)
    result.latencies = latencies
    return result


async def measure_transaction_baseline(settings: Settings, count: int, concurrency: int,
                                       statements: int = 6) -> Result:
    """The floor under the commit: a transaction of ``statements`` trivial statements, with the
    same concurrency and pool, on the same machine at the same time."""
    async with Database.open(settings.with_overrides(db_pool_max=concurrency)) as db:
        async def one(_: int) -> str | None:
            async with db.transaction() as conn:
                for _ in range(statements):
                    await conn.fetchval("SELECT 1")
            return None

        await timed("warm", concurrency, concurrency, one)
        return await timed(f"baseline: BEGIN, {statements} x SELECT 1, COMMIT", count,
                           concurrency, one)


async def measure_scans(conn: asyncpg.Connection, count: int) -> list[Result]:
    """The sweeper's and the deletion worker's scans, as they run them."""
    async def sweep(_: int) -> str | None:
        await q.stale_pending_uploads(conn, STALE_SECONDS, 500)
        return None

    async def claim(_: int) -> str | None:
        tx = conn.transaction()
        await tx.start()
        try:
            await q.claim_object_deletions(conn, 100)
        finally:
            await tx.rollback()
        return None

    async def select_one(_: int) -> str | None:
        await conn.fetchval("SELECT 1")
        return None

    return [await timed("baseline: SELECT 1 (one round trip)", count, 1, select_one),
            await timed("sweeper scan (stale pending uploads)", count, 1, sweep),
            await timed("deletion worker claim (due entries)", count, 1, claim)]
