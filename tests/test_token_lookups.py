"""Requests with the same token that miss the token cache at once are answered by one lookup
(when an entry expires, every request in flight with that token misses it together)."""

from __future__ import annotations

import asyncio
import dataclasses
from urllib.parse import urlsplit

import pytest

from benchmarks.counting import counting_proxies
from gateway.auth import Authenticator, Credentials
from gateway.config import Settings
from gateway.db.pool import Database
from tests.conftest import World


@pytest.mark.parametrize("live", [True, False])
async def test_simultaneous_misses_share_one_lookup(settings: Settings, world: World,
                                                    live: bool) -> None:
    """20 requests at once cost the round trips of one while the cache is trusted; without
    change notifications (nothing may be cached) each request looks its token up itself.
    Counted by a proxy in front of PostgreSQL (each Sync or simple Query), on a pool of one
    connection so that no new connection's statement preparation enters the count."""
    pg_port = urlsplit(settings.database_url).port
    s3_port = urlsplit(settings.s3_endpoint_url).port
    assert pg_port is not None and s3_port is not None
    creds = Credentials(private_token=world.tokens["developer"])
    with counting_proxies(pg_port, s3_port) as (pg, _):
        url = settings.database_url.replace(f":{pg_port}/", f":{pg.port}/")
        async with Database.open(dataclasses.replace(settings, database_url=url,
                                                     db_pool_max=1)) as db:

            async def misses(n: int) -> int:
                """Round trips of ``n`` simultaneous authentications on an empty cache."""
                authenticator = Authenticator(db, cache_seconds=60)
                authenticator.cache.set_live(live)
                before = pg.snapshot()["round trips"]
                who = await asyncio.gather(*(authenticator.authenticate(creds, "GET")
                                             for _ in range(n)))
                assert {w.username for w in who} == {"developer"}
                return pg.snapshot()["round trips"] - before

            await misses(1)  # the statement prepared; the token's last use recorded
            one = await misses(1)
            twenty = await misses(20)
    assert one >= 1
    assert twenty == (one if live else 20 * one)
