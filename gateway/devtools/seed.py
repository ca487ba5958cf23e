"""What ``gateway dev`` and ``gateway cluster`` put in a database before serving: the schema,
the administrator, a demo project, and the administrator's dev token, kept across starts."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway import auth
from gateway.db.identity import tokens as token_queries
from gateway.db.migrate import migrate
from gateway.db.pool import connect
from gateway.identity import limits
from gateway.identity import seed as identity_seed
from gateway.identity.tokens import issue_personal_access_token

DEMO_GROUP, DEMO_PROJECT = "demo", "project"
DEV_TOKEN_NAME = "gateway dev"


@dataclass(frozen=True, slots=True)
class Seeded:
    token: str
    token_is_new: bool
    project_id: int


async def seed(database_url: str, saved_token: str | None) -> Seeded:
    """Migrate, then make sure the administrator, ``demo/project`` and a working token exist.

    ``saved_token`` (from the data folder) is kept while it still works as the administrator's
    ``api`` token; otherwise a new one is made. Either way every other token named
    ``gateway dev`` is revoked, so starts do not pile up administrator tokens.
    """
    await migrate(database_url)
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            admin = await identity_seed.ensure_admin(conn)
            project = await identity_seed.ensure_project(
                conn, DEMO_GROUP, DEMO_PROJECT, owner_id=admin.id
            )
            token, token_id = await _working_token(conn, admin.id, saved_token)
            await _revoke_other_dev_tokens(conn, admin.id, token_id)
    finally:
        await conn.close()
    return Seeded(token, token != saved_token, project.id)


async def _working_token(
    conn: asyncpg.Connection, admin_id: int, saved: str | None
) -> tuple[str, int | None]:
    if saved:
        row = await token_queries.find_personal_access_token(conn, auth.token_digest(saved))
        if (row is not None and row.user_id == admin_id and not row.revoked
                and not row.expired and "api" in row.scopes and row.state == "active"):
            return saved, row.token_id
    issued = await issue_personal_access_token(
        conn, admin_id, DEV_TOKEN_NAME, ["api"], limits.max_token_expiry(365)
    )
    return issued.token, issued.record.id


async def _revoke_other_dev_tokens(
    conn: asyncpg.Connection, admin_id: int, keep_id: int | None
) -> None:
    rows, _ = await token_queries.list_pats(
        conn, user_id=admin_id, revoked=False, search=DEV_TOKEN_NAME, limit=10_000, offset=0
    )
    for row in rows:
        if row.name == DEV_TOKEN_NAME and row.id != keep_id:
            await token_queries.revoke_pat(conn, row.id)
