"""Abandoned upload sessions: after their expiry the sweeper leaves no row, no object and no
open multipart upload; a session still being appended to is left alone."""

from __future__ import annotations

import asyncpg

from gateway import keys
from gateway.app import create_app
from gateway.config import MiB, Settings
from gateway.sweeper import sweep_stale_uploads
from tests.conftest import World
from tests.faults.checks import wait_for
from tests.resumable.common import leftovers

GENERIC = "/api/v4/projects/{pid}/packages/generic/data/1.0.0/blob.bin"
NOTHING = {"sessions": 0, "pending": 0, "objects": 0, "multipart": 0}


def _hdr(world: World, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "PRIVATE-TOKEN": world.tokens["developer"], **extra}


async def _abandoned(client, world: World) -> str:
    """A session holding an S3 part and a tail, left by its client."""
    resp = await client.post(GENERIC.format(pid=world.project_id) + "/uploads",
                             headers=_hdr(world, **{"Upload-Length": str(30 * MiB)}))
    url = resp.headers["Location"]
    resp = await client.patch(url, data=b"p" * (9 * MiB), headers=_hdr(world, **{
        "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}))
    assert resp.status == 204
    return url


async def test_an_abandoned_session_leaves_nothing_after_its_expiry(
        aiohttp_client, settings: Settings, db: asyncpg.Connection, world: World, s3,
        bucket: str) -> None:
    # The instances' own sweeper, looking twice a second.
    client = await aiohttp_client(create_app(settings.with_overrides(
        resumable_upload_seconds=3, stale_upload_seconds=2)))
    url = await _abandoned(client, world)
    assert (await leftovers(db, s3, bucket))["multipart"] == 1

    async def swept() -> bool:
        return await leftovers(db, s3, bucket) == NOTHING
    await wait_for(swept, "the sweeper removed the session", timeout=30)
    resp = await client.head(url, headers=_hdr(world))
    assert resp.status == 404


async def test_a_session_whose_project_is_deleted_is_swept(
        client, settings: Settings, world: World, s3, bucket: str) -> None:
    await _abandoned(client, world)
    await world.conn.execute("DELETE FROM projects WHERE id = $1", world.project_id)
    app = client.server.app
    report = await sweep_stale_uploads(app[keys.db], app[keys.store], 900)
    assert len(report.sessions) == 1
    assert await leftovers(world.conn, s3, bucket) == NOTHING


async def test_a_live_session_is_not_swept(client, world: World, s3, bucket: str) -> None:
    await _abandoned(client, world)
    app = client.server.app
    report = await sweep_stale_uploads(app[keys.db], app[keys.store], 900)
    assert report.sessions == []
    assert (await leftovers(world.conn, s3, bucket))["sessions"] == 1
