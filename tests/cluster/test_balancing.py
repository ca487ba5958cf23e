"""Many clients through nginx: every gateway takes a share, and racing uploads into one new
version on different gateways make exactly one package."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import aiohttp
import asyncpg

from gateway.devtools.cluster import Cluster
from gateway.devtools.dev import BUCKET
from tests.cluster.conftest import (
    Api,
    committed_sha256s,
    nginx_log_size,
    sha256,
    unique,
    wait_for_nginx_lines,
)
from tests.faults.checks import assert_consistent


async def wait_for_gateway_lines(cluster: Cluster, name: str, count: int,
                                 timeout: float = 30) -> Counter:
    """How many 201 PUT lines naming `name` each gateway logged, once `count` are there."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        logged = Counter({
            f"127.0.0.1:{instance.port}": sum(
                1 for line in instance.log_path.read_text().splitlines()
                if name in line and '"method":"PUT"' in line and '"status":201' in line)
            for instance in cluster.instances})
        if sum(logged.values()) >= count or asyncio.get_running_loop().time() > deadline:
            return logged
        await asyncio.sleep(0.1)


async def test_uploads_from_many_clients_land_on_all_three_gateways(
    cluster: Cluster, api: Api, db: asyncpg.Connection, s3
) -> None:
    before, since = await committed_sha256s(db), nginx_log_size(cluster)
    name = unique("spread")
    bodies = {f"f{i}.bin": os.urandom(64 * 1024 + i) for i in range(30)}

    async def client(files: list[str]) -> list[int]:
        # A client of its own: its own connections, as separate CI jobs have.
        async with aiohttp.ClientSession() as http:
            statuses = []
            for file_name in files:
                async with http.put(api.file(name, "1.0.0", file_name),
                                    data=bodies[file_name], headers=api.auth) as resp:
                    statuses.append(resp.status)
            return statuses

    names = list(bodies)
    results = await asyncio.gather(*(client(names[i::10]) for i in range(10)))
    assert sorted(s for r in results for s in r) == [201] * 30

    # nginx's access log names the gateway that answered each request.
    lines = [ln for ln in await wait_for_nginx_lines(cluster, since, 30) if name in ln.request]
    answered = Counter(ln.answered_by for ln in lines)
    assert set(answered) == {f"127.0.0.1:{i.port}" for i in cluster.instances}
    # ... and each gateway's own log agrees, once each has written its access lines (a
    # gateway logs a request after its answer has gone out, so a client may be ahead of it).
    logged = await wait_for_gateway_lines(cluster, name, 30)
    assert logged == answered
    await assert_consistent(db, s3, BUCKET, [*before, *map(sha256, bodies.values())])


async def test_16_racing_uploads_into_one_new_version_make_16_files_in_one_package(
    cluster: Cluster, api: Api, db: asyncpg.Connection, s3
) -> None:
    before, since = await committed_sha256s(db), nginx_log_size(cluster)
    name = unique("race")
    bodies = {f"part-{i}.bin": os.urandom(256 * 1024 + i) for i in range(16)}

    async def put(file_name: str) -> int:
        async with aiohttp.ClientSession() as http, http.put(
            api.file(name, "1.0.0", file_name), data=bodies[file_name], headers=api.auth
        ) as resp:
            return resp.status

    statuses = await asyncio.gather(*(put(f) for f in bodies))
    assert statuses == [201] * 16
    lines = [ln for ln in await wait_for_nginx_lines(cluster, since, 16) if name in ln.request]
    assert len({ln.answered_by for ln in lines}) > 1  # the race ran on several gateways
    packages = await db.fetch("SELECT id FROM packages WHERE name = $1 AND version = '1.0.0'",
                              name)
    assert len(packages) == 1
    files = await db.fetch("SELECT file_name, file_sha256 FROM package_files WHERE package_id = $1",
                           packages[0]["id"])
    assert {r["file_name"]: r["file_sha256"] for r in files} == {
        f: sha256(b) for f, b in bodies.items()
    }
    await assert_consistent(db, s3, BUCKET, [*before, *map(sha256, bodies.values())])
