"""The session engine with real PostgreSQL and S3: a session continued by another gateway
(another app, another pool, another hash object) ends with the digests of a plain PUT."""

from __future__ import annotations

import hashlib
import itertools
import os

import asyncpg
import pytest

from gateway.app import create_app
from gateway.config import MiB, Settings
from tests.conftest import World
from tests.resumable.common import leftovers

GENERIC = "/api/v4/projects/{pid}/packages/generic/data/1.0.0/blob.bin"
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
async def two(aiohttp_client, settings: Settings, db: asyncpg.Connection):
    """Two gateways on one database and bucket, as behind a load balancer."""
    return (await aiohttp_client(create_app(settings.with_overrides(instance_id="a"))),
            await aiohttp_client(create_app(settings.with_overrides(instance_id="b"))))


def _hdr(world: World, **extra: str) -> dict[str, str]:
    return {**TUS, "PRIVATE-TOKEN": world.tokens["developer"], **extra}


async def _create(client, world: World, length: int) -> str:
    resp = await client.post(GENERIC.format(pid=world.project_id) + "/uploads",
                             headers=_hdr(world, **{"Upload-Length": str(length)}))
    assert resp.status == 201
    return resp.headers["Location"]


async def _patch(client, world: World, url: str, offset: int, data: bytes) -> int:
    resp = await client.patch(url, data=data, headers=_hdr(
        world, **{"Upload-Offset": str(offset),
                  "Content-Type": "application/offset+octet-stream"}))
    assert resp.status == 204, await resp.text()
    return int(resp.headers["Upload-Offset"])


async def _digests_seen(client, world: World) -> dict[str, object]:
    resp = await client.get(f"/api/v4/projects/{world.project_id}/packages",
                            headers=_hdr(world))
    (pkg,) = await resp.json()
    resp = await client.get(f"/api/v4/projects/{world.project_id}/packages/{pkg['id']}"
                            "/package_files", headers=_hdr(world))
    (record,) = await resp.json()
    return {k: record[k] for k in ("size", "file_md5", "file_sha1", "file_sha256")}


def _expected(data: bytes) -> dict[str, object]:
    return {"size": len(data), "file_md5": hashlib.md5(data).hexdigest(),
            "file_sha1": hashlib.sha1(data).hexdigest(),
            "file_sha256": hashlib.sha256(data).hexdigest()}


async def test_appends_alternating_between_gateways_give_a_plain_puts_digests(
        two, world: World) -> None:
    data = os.urandom(30 * MiB + 12345)
    # Uneven pieces: parts, tails below 5 MiB, tails carried into the next part.
    cuts = [0, 3 * MiB, 11 * MiB + 7, 12 * MiB, 21 * MiB, len(data)]
    url = await _create(two[0], world, len(data))
    for i, (start, end) in enumerate(itertools.pairwise(cuts)):
        assert await _patch(two[i % 2], world, url, start, data[start:end]) == end
    assert await _digests_seen(two[1], world) == _expected(data)


async def test_the_digests_equal_those_of_a_plain_put_of_the_same_bytes(
        two, world: World) -> None:
    data = os.urandom(9 * MiB)
    resp = await two[0].put(GENERIC.format(pid=world.project_id).replace("data", "plain"),
                            data=data, headers=_hdr(world))
    assert resp.status == 201
    url = await _create(two[0], world, len(data))
    await _patch(two[0], world, url, 0, data[:6 * MiB])
    await _patch(two[1], world, url, 6 * MiB, data[6 * MiB:])
    rows = await world.conn.fetch(
        "SELECT file_md5, file_sha1, file_sha256, size FROM package_files ORDER BY id")
    assert len(rows) == 2 and dict(rows[0]) == dict(rows[1])


async def test_a_tail_below_5_mib_is_acknowledged_and_kept_in_the_session_row(
        two, world: World, s3, bucket: str) -> None:
    url = await _create(two[0], world, 10 * MiB)
    assert await _patch(two[0], world, url, 0, b"t" * MiB) == MiB
    row = await world.conn.fetchrow("SELECT upload_offset, length(tail) AS tail, parts"
                                    " FROM upload_sessions")
    assert (row["upload_offset"], row["tail"], row["parts"]) == (MiB, MiB, "{}")
    # Nothing in S3 yet: the tail is the only copy, durable in PostgreSQL.
    assert await leftovers(world.conn, s3, bucket) == {
        "sessions": 1, "pending": 0, "objects": 0, "multipart": 0}


async def test_a_small_file_goes_up_as_one_object_without_a_multipart_upload(
        two, world: World) -> None:
    data = b"tiny"
    url = await _create(two[0], world, len(data))
    assert await _patch(two[1], world, url, 0, data) == len(data)
    assert await _digests_seen(two[0], world) == _expected(data)


async def test_an_empty_file_completes_at_creation(two, world: World) -> None:
    await _create(two[0], world, 0)
    # tus: an upload of length 0 is complete once created, with no PATCH.
    assert await _digests_seen(two[0], world) == _expected(b"")


async def test_appends_give_back_every_byte_of_the_buffer_budget(two, world: World) -> None:
    from gateway import keys

    data = os.urandom(19 * MiB + 3)
    url = await _create(two[0], world, len(data))
    await _patch(two[0], world, url, 0, data[: 9 * MiB])  # a part and a 1 MiB tail
    resp = await two[0].patch(url, data=b"x", headers=_hdr(world, **{  # refused: wrong offset
        "Upload-Offset": "1", "Content-Type": "application/offset+octet-stream"}))
    assert resp.status == 409
    await _patch(two[0], world, url, 9 * MiB, data[9 * MiB:])
    for client in two:
        assert client.server.app[keys.buffers].used == 0
    assert await _digests_seen(two[0], world) == _expected(data)
