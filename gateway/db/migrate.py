"""Numbered schema migrations, applied in order by ``gateway migrate``.

A migration is a file ``gateway/db/migrations/NNNN_name.sql`` (four digits, numbered from 0001
without gaps). ``schema_migrations`` records each one applied, with the sha256 of its text, so a
migration is applied once and a released migration that was edited afterwards is refused rather
than silently skipped.

Each migration runs in its own transaction, which first takes a transaction-scoped advisory
lock: gateways or jobs migrating at once take turns (the second finds the work done), nothing
depends on session state (so it also works through PgBouncer in transaction mode), and a
migration that fails leaves the database at the version before it. ``lock_timeout`` keeps a
migration from queueing behind a long transaction of a running gateway while every later query
queues behind it; the migration fails instead and can simply be run again.

A database made by release 0.1.0 (which applied ``schema.sql`` idempotently and kept no version)
is recognised by its tables without ``schema_migrations``: 0001 is that very schema, idempotent,
so it is applied over it as over an empty database and recorded.

The rules that keep old gateways working while the new schema is rolled out are in the README
("Schema changes").
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import asyncpg

from gateway.db.pool import connect

log = logging.getLogger("gateway.migrate")

# Any fixed number: migrators take turns instead of racing on DDL.
_MIGRATE_LOCK = 0x7061636B  # "pack"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# A migration waits this long for a table lock before it gives up (and can be run again).
_LOCK_TIMEOUT = "10s"

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
_RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
# What release 0.1.0 left: its tables, and no version table.
_IS_LEGACY = (
    "SELECT to_regclass('schema_migrations') IS NULL AND to_regclass('package_files') IS NOT NULL"
)
CURRENT_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"


class MigrationError(Exception):
    """The migrations cannot be applied; the message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(slots=True)
class MigrationReport:
    version: int = 0  # the database's version afterwards
    applied: list[str] = field(default_factory=list)  # file names applied by this run
    legacy: bool = False  # the database was made by release 0.1.0
    newer: bool = False  # the database is ahead of this release (a rollback, or old code)

    def __str__(self) -> str:
        lines = []
        if self.legacy:
            lines.append("recognised a database made by release 0.1.0 (no version table)")
        lines += [f"applied {name}" for name in self.applied]
        if self.newer:
            lines.append(f"the database is at version {self.version}, newer than this release: "
                         "nothing to do")
        lines.append(f"schema is up to date (version {self.version})")
        return "\n".join(lines)


def _folder() -> Traversable:
    return resources.files("gateway.db").joinpath("migrations")


def load_migrations(folder: Path | Traversable | None = None) -> list[Migration]:
    """The migrations in ``folder`` (default: the package's), checked and in order."""
    found: list[Migration] = []
    for entry in (folder or _folder()).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _FILE_RE.match(entry.name)
        if not m:
            raise MigrationError(
                f"{entry.name}: a migration is named NNNN_lower_case_name.sql"
            )
        found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise MigrationError(
                f"{mig.file_name}: expected migration {expected:04d} next (numbers run from "
                "0001 without gaps or repeats)"
            )
    return found


def latest_version(migrations: Iterable[Migration] | None = None) -> int:
    """The version this release's code expects (readiness waits for it)."""
    return max((m.version for m in migrations or load_migrations()), default=0)


async def migrate(
    dsn: str, *, migrations: list[Migration] | None = None, pgbouncer: bool = False
) -> MigrationReport:
    """Bring the database at ``dsn`` to the latest migration; safe to run anywhere, any time.
    ``pgbouncer``: ``dsn`` is PgBouncer in transaction pooling (``GATEWAY_DB_PGBOUNCER``)."""
    todo = load_migrations() if migrations is None else migrations
    conn = await connect(dsn, pgbouncer=pgbouncer)
    report = MigrationReport()
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            report.legacy = await conn.fetchval(_IS_LEGACY)
            await conn.execute(_CREATE_VERSION_TABLE)
            _check_applied(await conn.fetch(_APPLIED), todo, report)
        if report.legacy:
            log.info("recognised a database made by release 0.1.0; recording it")
        for mig in todo:
            if await _apply(conn, mig):
                report.applied.append(mig.file_name)
                log.info("applied migration", extra={"migration": mig.file_name})
        report.version = max(report.version, await conn.fetchval(CURRENT_VERSION))
    finally:
        await conn.close()
    return report


def _check_applied(
    rows: list[asyncpg.Record], todo: list[Migration], report: MigrationReport
) -> None:
    known = {m.version: m for m in todo}
    for row in rows:
        mig = known.get(row["version"])
        if mig is None:
            report.newer = True
        elif mig.checksum != row["checksum"]:
            raise MigrationError(
                f"{mig.file_name} was changed after it was applied (recorded checksum "
                f"{row['checksum'][:12]}…, file {mig.checksum[:12]}…): released migrations are "
                "never edited; restore it and put the change in a new migration"
            )
        report.version = max(report.version, row["version"])


async def _apply(conn: asyncpg.Connection, mig: Migration) -> bool:
    """Apply ``mig`` in its own transaction unless it is recorded already; True if applied."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
        if await conn.fetchval(
            "SELECT true FROM schema_migrations WHERE version = $1", mig.version
        ):
            return False  # another migrator was first
        await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
        try:
            await conn.execute(mig.sql)
        except asyncpg.PostgresError as exc:
            raise MigrationError(
                f"{mig.file_name} failed and was rolled back (the database stays at the "
                f"version before it): {type(exc).__name__}: {exc}"
            ) from exc
        await conn.execute(_RECORD, mig.version, mig.name, mig.checksum)
    return True


async def schema_version(conn: asyncpg.Connection) -> int | None:
    """The database's version, or None when it has never been migrated by this release."""
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return None
    return await conn.fetchval(CURRENT_VERSION)
