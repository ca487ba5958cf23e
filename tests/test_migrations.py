"""Numbered migrations: a version table, one transaction each, and the previous release's
database recognised and upgraded to exactly what a fresh migrate makes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.db.migrate import (
    Migration,
    MigrationError,
    latest_version,
    load_migrations,
    migrate,
    schema_version,
)
from gateway.identity import seed
from tests.conftest import ROOT

# The schema of release 0.1.0 as its `gateway migrate` applied it (no version table).
PREVIOUS_RELEASE_SCHEMA = ROOT / "tests" / "data" / "schema-0.1.0.sql"

NewDatabase = Callable[[], Awaitable[str]]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def new_database(database_url: str) -> AsyncIterator[NewDatabase]:
    """Makes empty databases on the test server; they are dropped afterwards."""
    made: list[str] = []
    admin = await asyncpg.connect(database_url)

    async def make() -> str:
        name = f"migrate_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return _with_database(database_url, name)

    try:
        yield make
    finally:
        for name in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def fingerprint(url: str) -> dict[str, list]:
    """Everything a migration may change: tables and columns, indexes, constraints, triggers,
    functions, sequences, and the recorded versions."""
    conn = await asyncpg.connect(url)
    try:
        queries = {
            "columns": """SELECT table_name, column_name, data_type, column_default, is_nullable
                          FROM information_schema.columns WHERE table_schema = 'public'""",
            "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
            "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                              FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
            "triggers": """SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
                           WHERE NOT tgisinternal""",
            "functions": """SELECT proname, pg_get_functiondef(oid) FROM pg_proc
                            WHERE pronamespace = 'public'::regnamespace""",
            "sequences": """SELECT sequence_name FROM information_schema.sequences
                            WHERE sequence_schema = 'public'""",
            "versions": "SELECT version, name, checksum FROM schema_migrations",
        }
        return {k: sorted(tuple(r) for r in await conn.fetch(q)) for k, q in queries.items()}
    finally:
        await conn.close()


async def make_previous_release_database(url: str) -> None:
    """What release 0.1.0's `gateway migrate` did, and some data in it."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x7061636B)
            await conn.execute(PREVIOUS_RELEASE_SCHEMA.read_text())
        await seed.bootstrap(conn)
        admin = await seed.ensure_admin(conn)
        await seed.ensure_project(conn, "acme", "tools", owner_id=admin.id)
    finally:
        await conn.close()


async def version_rows(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r["version"] for r in await conn.fetch(
            "SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()


def write_migrations(folder: Path, files: dict[str, str]) -> list[Migration]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    return load_migrations(folder)


# --- the package's migrations -----------------------------------------------------------------


def test_the_first_migration_is_the_previous_release_schema_unchanged_but_its_header() -> None:
    first = load_migrations()[0]
    old = PREVIOUS_RELEASE_SCHEMA.read_text()
    strip = lambda sql: [ln for ln in sql.splitlines() if not ln.startswith("--")]  # noqa: E731
    assert (first.version, first.name) == (1, "initial")
    assert strip(first.sql) == strip(old)


def test_migration_files_are_numbered_from_one_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert latest_version() == len(migrations)


async def test_fresh_database_is_migrated_to_the_latest_version(new_database) -> None:
    url = await new_database()
    report = await migrate(url)
    assert report.version == latest_version()
    assert report.applied == [m.file_name for m in load_migrations()]
    assert not report.legacy
    assert await version_rows(url) == list(range(1, latest_version() + 1))


async def test_previous_release_database_is_upgraded_to_what_a_fresh_migrate_makes(
    new_database,
) -> None:
    old, fresh = await new_database(), await new_database()
    await make_previous_release_database(old)
    report = await migrate(old)
    await migrate(fresh)
    assert report.legacy
    assert report.version == latest_version()
    assert await fingerprint(old) == await fingerprint(fresh)
    conn = await asyncpg.connect(old)
    try:  # the data the previous release stored is still there
        assert await conn.fetchval("SELECT count(*) FROM personal_access_tokens") == 1
        assert await conn.fetchval("SELECT full_path FROM namespaces WHERE kind = 'group'") == (
            "acme"
        )
    finally:
        await conn.close()


async def test_migrating_again_applies_nothing(new_database) -> None:
    url = await new_database()
    await migrate(url)
    before = await fingerprint(url)
    again = await migrate(url)
    assert again.applied == []
    assert await fingerprint(url) == before


async def test_migrators_started_together_apply_each_migration_once(new_database) -> None:
    url = await new_database()
    reports = await asyncio.gather(*(migrate(url) for _ in range(4)))
    applied = [name for r in reports for name in r.applied]
    assert sorted(applied) == [m.file_name for m in load_migrations()]
    assert await version_rows(url) == list(range(1, latest_version() + 1))


# --- what later migrations may do -------------------------------------------------------------


async def test_later_migrations_run_in_order_and_may_rewrite_data(
    new_database, tmp_path: Path
) -> None:
    url = await new_database()
    migrations = write_migrations(tmp_path, {
        "0001_things.sql": "CREATE TABLE things (id int PRIMARY KEY, label text);"
                           "INSERT INTO things VALUES (1, 'a'), (2, 'b');",
        # Not expressible as ADD ... IF NOT EXISTS: a rename and a backfill.
        "0002_rename_label.sql": "ALTER TABLE things RENAME COLUMN label TO title;",
        "0003_backfill.sql": "UPDATE things SET title = upper(title);",
    })
    report = await migrate(url, migrations=migrations)
    assert report.applied == ["0001_things.sql", "0002_rename_label.sql", "0003_backfill.sql"]
    conn = await asyncpg.connect(url)
    try:
        assert [r["title"] for r in await conn.fetch("SELECT title FROM things ORDER BY id")] == [
            "A", "B"
        ]
        assert await schema_version(conn) == 3
    finally:
        await conn.close()


async def test_failing_migration_is_rolled_back_alone_and_named(
    new_database, tmp_path: Path
) -> None:
    url = await new_database()
    migrations = write_migrations(tmp_path, {
        "0001_things.sql": "CREATE TABLE things (id int PRIMARY KEY);",
        "0002_broken.sql": "CREATE TABLE half (id int); SELECT no_such_function();",
    })
    with pytest.raises(MigrationError, match=r"0002_broken\.sql failed and was rolled back"):
        await migrate(url, migrations=migrations)
    conn = await asyncpg.connect(url)
    try:
        assert await schema_version(conn) == 1
        assert await conn.fetchval("SELECT to_regclass('things') IS NOT NULL")
        assert await conn.fetchval("SELECT to_regclass('half') IS NULL")
    finally:
        await conn.close()


async def test_a_released_migration_edited_afterwards_is_refused(
    new_database, tmp_path: Path
) -> None:
    url = await new_database()
    await migrate(url, migrations=write_migrations(tmp_path / "v1", {
        "0001_things.sql": "CREATE TABLE things (id int);",
    }))
    edited = write_migrations(tmp_path / "v2", {
        "0001_things.sql": "CREATE TABLE things (id bigint);",
        "0002_more.sql": "CREATE TABLE more (id int);",
    })
    with pytest.raises(MigrationError, match=r"0001_things\.sql was changed after it was applied"):
        await migrate(url, migrations=edited)
    assert await version_rows(url) == [1]


async def test_a_database_newer_than_this_release_is_left_alone(
    new_database, tmp_path: Path
) -> None:
    url = await new_database()
    files = {"0001_things.sql": "CREATE TABLE things (id int);",
             "0002_more.sql": "CREATE TABLE more (id int);"}
    await migrate(url, migrations=write_migrations(tmp_path / "new", files))
    older = write_migrations(tmp_path / "old", {"0001_things.sql": files["0001_things.sql"]})
    report = await migrate(url, migrations=older)
    assert report.newer
    assert report.applied == []
    assert report.version == 2


def test_a_gap_in_the_numbers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="expected migration 0002 next"):
        write_migrations(tmp_path, {"0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 1;"})


def test_a_badly_named_migration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match=r"NNNN_lower_case_name\.sql"):
        write_migrations(tmp_path, {"1_a.sql": "SELECT 1;"})
