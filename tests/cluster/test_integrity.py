"""Integrity features through nginx, 3 gateways and PgBouncer in transaction pooling: racing
conditional uploads, deduplication and deploy by checksum, validators and ranges."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import asyncpg

from gateway.devtools.cluster import Cluster
from gateway.devtools.dev import BUCKET
from tests.cluster.conftest import Api, committed_sha256s, sha256, unique
from tests.faults.checks import assert_consistent


async def test_racing_conditional_uploads_through_the_cluster_store_one(
    cluster: Cluster, api: Api, http: aiohttp.ClientSession, db: asyncpg.Connection, s3
) -> None:
    before = await committed_sha256s(db)
    url = api.file(unique("race"), "1.0.0", "only.bin")
    bodies = [os.urandom(100_000) + bytes([i]) for i in range(12)]

    async def one(body: bytes) -> int:
        async with http.put(url, data=body,
                            headers={**api.auth, "If-None-Match": "*"}) as resp:
            return resp.status

    statuses = await asyncio.gather(*(one(b) for b in bodies))
    assert sorted(statuses) == [201] + [412] * 11
    winner = bodies[statuses.index(201)]
    await assert_consistent(db, s3, BUCKET, [*before, sha256(winner)])


async def test_dedup_deploy_validators_and_ranges_through_the_cluster(
    cluster: Cluster, api: Api, http: aiohttp.ClientSession, db: asyncpg.Connection, s3
) -> None:
    before = await committed_sha256s(db)
    name, body = unique("dedup"), os.urandom(2 * 2**20 + 5)
    first, second = api.file(name, "1.0.0", "a.bin"), api.file(name, "2.0.0", "b.bin")
    await asyncio.gather(*(http.put(u, data=body, headers=api.auth) for u in (first, second)))
    deployed = api.file(name, "3.0.0", "c.bin")
    async with http.put(deployed, data=b"", headers={
        **api.auth, "X-Checksum-Deploy": "true", "X-Checksum-Sha256": sha256(body),
        "Content-Length": "0",
    }) as resp:
        assert resp.status == 201
    assert await db.fetchval(
        "SELECT refcount FROM blobs WHERE sha256 = $1", sha256(body)) == 3
    await assert_consistent(db, s3, BUCKET, [*before, *[sha256(body)] * 3])

    etag = f'"{sha256(body)}"'
    async with http.get(deployed, headers={**api.auth, "If-None-Match": etag},
                        allow_redirects=False) as resp:
        assert resp.status == 304
    async with http.head(deployed, headers={**api.auth, "Range": "bytes=10-19"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    async with http.get(deployed, headers={**api.auth, "Range": "bytes=-100"}) as resp:
        # The presigned URL, followed, serves the range. rclone's S3 answers it with status
        # 200 (and the right Content-Range and bytes) where S3 and moto answer 206.
        assert resp.headers["Content-Range"] == f"bytes {len(body) - 100}-{len(body) - 1}/" \
                                                f"{len(body)}"
        assert await resp.read() == body[-100:]
