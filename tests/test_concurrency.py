"""Parallel uploads into one new package version: GitLab may answer 500, packgate serializes."""

from __future__ import annotations

import asyncio
import hashlib

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
