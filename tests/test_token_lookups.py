"""Requests with the same token that miss the token cache at once are answered by one lookup
(when an entry expires, every request in flight with that token misses it together)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import pytest

from gateway.auth import Authenticator, Credentials
from gateway.config import Settings
from gateway.db.pool import Database
from tests.conftest import World


async def token_reads(database_url: str) -> int:
    """How often the tokens table was read, once the pool's backends have reported it."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
            "WHERE relname = 'personal_access_tokens'")
    finally:
        await conn.close()


async def settled_token_reads(database_url: str, since: int) -> int:
    # A backend reports its table reads when it exits (the pool is closed before this).
    end = time.monotonic() + 5
    reads = await token_reads(database_url)
    while time.monotonic() < end:
        await asyncio.sleep(0.2)
        again = await token_reads(database_url)
        if again == reads and again > since:
            break
        reads = again
    return reads - since


@pytest.mark.parametrize("live", [True, False])
async def test_simultaneous_misses_share_one_lookup(settings: Settings, world: World,
                                                    live: bool) -> None:
    """20 requests at once: one lookup while the cache is trusted; without change
    notifications (nothing may be cached), each request looks its token up itself."""
    settings = dataclasses.replace(settings, db_pool_max=20)
    before = await token_reads(settings.database_url)
    async with Database.open(settings) as db:
        authenticator = Authenticator(db, cache_seconds=60)
        authenticator.cache.set_live(live)
        creds = Credentials(private_token=world.tokens["developer"])
        who = await asyncio.gather(*(authenticator.authenticate(creds, "GET")
                                     for _ in range(20)))
    assert {w.username for w in who} == {"developer"}
    lookups = 1 if live else 20
    # and one more read: the token's last use recorded (once in ten minutes, by its id)
    assert await settled_token_reads(settings.database_url, before) == lookups + 1
