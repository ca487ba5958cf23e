"""Claims about the local PostgreSQL cluster, checked against real postgres processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from gateway.devtools.postgres import PostgresCluster, find_pg_binary
from gateway.devtools.processes import LocalServiceError

DEADLINE = 30.0  # seconds, for every query and request


def query(url: str, sql: str) -> object:
    """First value of ``sql``'s result; several statements when it returns nothing."""

    async def run() -> object:
        conn = await asyncpg.connect(url, timeout=DEADLINE)
        try:
            if ";" in sql:
                return await conn.execute(sql, timeout=DEADLINE)
            return await conn.fetchval(sql, timeout=DEADLINE)
        finally:
            await conn.close(timeout=DEADLINE)

    return asyncio.run(run())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PostgresCluster]:
    pg = PostgresCluster(tmp_path / "pgdata", fast=True, timeout=DEADLINE)
    yield pg
    pg.stop()


def test_postgres_starts_and_answers_select_1(cluster: PostgresCluster) -> None:
    cluster.start()
    assert cluster.is_running()
    assert query(cluster.url, "SELECT 1") == 1


def test_postgres_keeps_data_across_restart(cluster: PostgresCluster) -> None:
    cluster.start()
    query(cluster.url, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    cluster.stop()
    assert not cluster.is_running()
    cluster.start()
    assert query(cluster.url, "SELECT x FROM kept") == 42


def test_postgres_restarts_after_kill(cluster: PostgresCluster) -> None:
    cluster.start()
    query(cluster.url, "SELECT 1")
    cluster.kill()
    assert not cluster.is_running()
    assert (cluster.data_dir / "postmaster.pid").exists()  # stale lock file left by the crash
    cluster.start()
    assert query(cluster.url, "SELECT 1") == 1


def test_postgres_reuses_remembered_port(cluster: PostgresCluster) -> None:
    cluster.start()
    port = cluster.port
    cluster.stop()
    again = PostgresCluster(cluster.data_dir, fast=True, timeout=DEADLINE)
    with again:
        assert again.port == port


def test_postgres_stop_is_idempotent(cluster: PostgresCluster) -> None:
    cluster.start()
    cluster.stop()
    cluster.stop()
    assert not cluster.is_running()


def test_postgres_refuses_second_postmaster_on_same_dir(cluster: PostgresCluster) -> None:
    cluster.start()
    with pytest.raises(LocalServiceError, match="already serves"):
        PostgresCluster(cluster.data_dir, fast=True, timeout=DEADLINE).start()


def test_missing_pg_binary_names_package() -> None:
    with pytest.raises(LocalServiceError, match="apt-get install postgresql"):
        find_pg_binary("no-such-postgres-program")


def test_postgres_create_database(cluster: PostgresCluster) -> None:
    cluster.start()
    url = cluster.create_database("app-db")
    assert cluster.create_database("app-db") == url  # already there: no error
    assert query(url, "SELECT current_database()") == "app-db"
