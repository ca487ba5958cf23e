"""PostgreSQL restarts behind PgBouncer: the cluster serves again as soon as PostgreSQL does.

PgBouncer, after a failed server login, refuses every client for ``server_login_retry``
seconds (15 by default) before it tries again, so with its default a gateway answered 503 for
up to 15 s after PostgreSQL was back (the soak found it). The cluster sets 1 s.
"""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.devtools.cluster import Cluster
from tests.cluster.conftest import Api, unique


async def test_requests_succeed_seconds_after_postgresql_is_back(
    cluster: Cluster, api: Api, http: aiohttp.ClientSession,
) -> None:
    packages = api.url(f"/projects/{api.project_id}/packages")
    cluster.postgres.stop("fast")
    try:
        # Requests while it is down make PgBouncer's server logins fail (and the gateways
        # answer 503, as the failure guarantees say).
        for _ in range(3):
            async with http.get(packages, headers=api.auth) as resp:
                assert resp.status == 503, await resp.text()
    finally:
        await asyncio.to_thread(cluster.postgres.start)
    await asyncio.sleep(3)  # well past a retry of 1 s, well before one of 15 s
    async with http.put(api.file(unique("pg-back"), "1.0.0", "f.txt"), data=b"back",
                        headers=api.auth) as resp:
        assert resp.status == 201, await resp.text()
    async with http.get(packages, headers=api.auth) as resp:
        assert resp.status == 200
