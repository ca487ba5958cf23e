"""The hot queries' plans on a small filled database: every one reaches the big tables through
an index (no sequential scan, with enable_seqscan left on), both as planned for the arguments
given and as the generic plan a prepared statement falls back to; the sweeper's and the deletion
worker's scans read due rows only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest

from benchmarks.metadata import plans
from benchmarks.metadata.fill import Filled, Sizes, fill
from gateway.db.migrate import migrate
from gateway.devtools.postgres import PostgresCluster

# Enough rows that an index is the cheaper plan, and the skew of the full size: four projects
# hold 400 times the packages of the others (the planner's per-project estimate is the mean).
SIZES = Sizes(groups=10, projects=200, packages=90_000, files=200_000, big_projects=4,
              big_project_files=40_000, files_per_big_package=2, big_package_files=2_000,
              pending=5_000, stale_pending=20, deletions=20_000, due_deletions=200)


@pytest.fixture(scope="module")
def filled_url(postgres: PostgresCluster | None) -> str:
    if postgres is None:
        pytest.skip("needs the suite's own PostgreSQL (it creates a database)")
    return postgres.create_database(f"plans_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def filled(filled_url: str) -> Filled:
    async def make() -> Filled:
        await migrate(filled_url)
        conn = await asyncpg.connect(filled_url)
        try:
            return await fill(conn, SIZES)
        finally:
            await conn.close()

    # Once for the module, on a loop of its own (the tests each run on theirs).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


@pytest.fixture
async def conn(filled_url: str, filled: Filled) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(filled_url)
    yield conn
    await conn.close()


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_hot_queries_use_indexes(conn, filled, generic) -> None:
    seq = {}
    for query in await plans.hot_queries(conn, filled):
        found = plans.sequential_scans(await plans.explain(
            conn, query, analyze=False, fmt="JSON", generic=generic))
        if found:
            seq[query.name] = found
    assert seq == {}


@pytest.mark.parametrize(("name", "table"), [("sweeper scan", "pending_uploads"),
                                             ("deletion worker claim", "object_deletions")])
async def test_background_scans_read_only_due_rows(conn, filled, name, table) -> None:
    (query,) = [q for q in await plans.hot_queries(conn, filled) if q.name == name]
    plan = await plans.explain(conn, query, fmt="JSON")
    assert plans.touches_only_due_rows(plan, table), plan


@pytest.mark.parametrize("name", ["project list: keyset first page",
                                  "project list: keyset deep page",
                                  "group list: keyset deep page", "package files: keyset page"])
async def test_keyset_pages_read_a_page_per_project(conn, filled, name) -> None:
    (query,) = [q for q in await plans.hot_queries(conn, filled) if q.name == name]
    plan = await plans.explain(conn, query, fmt="JSON", generic=True)
    table = "package_files" if "files" in name else "packages"
    assert plans.rows_read(plan, table) <= 21, plan
