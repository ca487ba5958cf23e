"""Applies schema.sql idempotently, one gateway at a time."""

from __future__ import annotations

from importlib import resources

from gateway.db.pool import connect

# Any fixed number: gateways starting together take turns instead of racing on DDL.
_MIGRATE_LOCK = 0x7061636B  # "pack"


def schema_sql() -> str:
    return resources.files("gateway").joinpath("schema.sql").read_text()


async def migrate(dsn: str, *, pgbouncer: bool = False) -> None:
    """``pgbouncer``: ``dsn`` is PgBouncer in transaction pooling (``GATEWAY_DB_PGBOUNCER``)."""
    conn = await connect(dsn, pgbouncer=pgbouncer)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            await conn.execute(schema_sql())
    finally:
        await conn.close()
