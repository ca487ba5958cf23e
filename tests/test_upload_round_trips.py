"""What a small upload costs in PostgreSQL round trips, counted by a proxy between the gateway
and PostgreSQL (each Sync or simple Query): the figure gateway/packages/commit.py explains."""

from __future__ import annotations

import os
from dataclasses import replace
from urllib.parse import urlsplit

from benchmarks.counting import counting_proxies
from gateway.app import create_app
from tests.conftest import World
from tests.package_helpers import generic_url, hdr


async def test_a_small_upload_into_an_existing_package_takes_seven_round_trips(
    aiohttp_client, settings, world: World
) -> None:
    # The token verified by the first upload (cached), then per upload. Before the body: the
    # project as the caller sees it, then governance's facts with the
    # duplicate look and the pending row. The commit: BEGIN, both locks, the look dropping the
    # pending row with the facts, the file row with its audit event, COMMIT.
    pg_port = urlsplit(settings.database_url).port
    s3_port = urlsplit(settings.s3_endpoint_url).port
    assert pg_port is not None and s3_port is not None
    with counting_proxies(pg_port, s3_port) as (pg, _):
        url = settings.database_url.replace(f":{pg_port}/", f":{pg.port}/")
        client = await aiohttp_client(create_app(replace(
            settings, database_url=url, database_listen_url=settings.listen_url,
            token_cache_seconds=5)))  # as deployed: the token is looked up once
        counts = []
        for i in range(4):
            before = pg.snapshot()["round trips"]
            resp = await client.put(generic_url(world.project_id, file=f"f{i}.bin"),
                                    data=os.urandom(4096), headers=hdr(world.tokens["developer"]))
            assert resp.status == 201, await resp.text()
            counts.append(pg.snapshot()["round trips"] - before)
        await client.close()  # while the proxy still passes the pool's goodbyes
    # The first upload verifies the token, creates the package and prepares the statements;
    # background work (the deletion worker, the sweeper) only ever adds to a count, so the
    # fewest is the upload's.
    assert min(counts[1:]) == 7, counts
