"""Parallel uploads into one new package version: GitLab may answer 500, packgate serializes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from gateway.app import create_app
from gateway.config import MiB
from tests.conftest import World


async def test_32_parallel_uploads_into_a_new_version_all_succeed_in_one_package(
    client, world: World
) -> None:
    base = f"/api/v4/projects/{world.project_id}/packages/generic/parallel/1.0.0"
    bodies = {f"file-{i}.bin": hashlib.sha256(str(i).encode()).digest() * 1000 for i in range(32)}

    async def put(name: str, body: bytes) -> int:
        resp = await client.put(f"{base}/{name}", data=body,
                                headers={"PRIVATE-TOKEN": world.tokens["developer"]})
        return resp.status

    statuses = await asyncio.gather(*(put(n, b) for n, b in bodies.items()))
    assert statuses == [201] * 32
    assert await world.conn.fetchval("SELECT count(*) FROM packages") == 1
    rows = await world.conn.fetch("SELECT file_name, file_sha256 FROM package_files")
    assert {r["file_name"]: r["file_sha256"] for r in rows} == {
        n: hashlib.sha256(b).hexdigest() for n, b in bodies.items()
    }


async def test_uploads_into_one_version_that_share_a_busy_process_all_succeed(
    aiohttp_client, settings, world: World, s3,
) -> None:
    # Six clients, each as fast as the others, share a process whose budget holds two parts:
    # every part takes about 3 s to fill (the machine is merely busy), longer than a slow
    # client's 2 s, while others wait for room. None of them is slower than the rest, so none
    # may be turned away with a 503.
    busy = settings.with_overrides(part_size=5 * MiB, parts_in_flight=1, buffer_budget=10 * MiB)
    client = await aiohttp_client(create_app(busy))
    base = f"/api/v4/projects/{world.project_id}/packages/generic/busy/1.0"
    size = 5 * MiB + 1  # one full part and one byte

    async def paced(seed: int) -> AsyncIterator[bytes]:
        piece = bytes([seed]) * (64 * 1024)
        for _ in range(size // len(piece)):
            yield piece
            await asyncio.sleep(0.035)  # about 1.8 MB/s
        yield piece[: size % len(piece)]

    async def put(i: int) -> int:
        resp = await client.put(f"{base}/f{i}.bin", data=paced(i), headers={
            "PRIVATE-TOKEN": world.tokens["developer"], "Content-Length": str(size)})
        return resp.status

    statuses = await asyncio.wait_for(asyncio.gather(*(put(i) for i in range(6))), 120)
    assert statuses == [201] * 6
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 6
