"""A large body with a Content-Length is received straight into the part buffers
(gateway/receiver.py); the connection is aiohttp's again once the body is in. What a client
sees of it: the connection carries the next request, and the body's framing is exact. Each case
runs against ``gateway serve`` (uvloop, the edge protocol) and the app in this process
(asyncio's loop, aiohttp's own protocol)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from gateway.app import create_app
from gateway.config import MiB, Settings
from tests.conftest import World, start_gateway
from tests.faults.checks import assert_consistent
from tests.faults.rawhttp import RawUpload, put_head

SIZE = 12 * MiB + 12345  # three parts of 5 MiB, the last one short (a multipart upload)
HEALTH = b"GET /-/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path(world: World, name: str) -> str:
    return f"/api/v4/projects/{world.project_id}/packages/generic/pkg/1.0/{name}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(part_size=5 * MiB)


@pytest.fixture(params=["serve", "in-process"])
async def raw(request, aiohttp_client, settings: Settings, tmp_path, world: World
              ) -> AsyncIterator[RawUpload]:
    """One connection to the gateway, as ``gateway serve`` or in this process."""
    if request.param == "serve":
        gw = start_gateway(settings, tmp_path, GATEWAY_PART_SIZE=str(settings.part_size))
        host, port = "127.0.0.1", int(gw.url.rsplit(":", 1)[1])
    else:
        client = await aiohttp_client(create_app(settings))
        gw, host, port = None, client.server.host, client.server.port
    conn = await RawUpload(host, port).connect()
    try:
        yield conn
    finally:
        conn.close()
        if gw is not None:
            gw.stop()


async def test_request_pipelined_behind_a_large_body_is_answered_on_the_same_connection(
    raw: RawUpload, world: World, s3, settings: Settings
) -> None:
    body = os.urandom(SIZE)
    await raw.send(put_head(path(world, "a.bin"), world.tokens["developer"], length=SIZE)
                   + body + HEALTH)
    stored = await raw.answer()
    assert stored.status == 201
    assert stored.headers.get("connection") != "close"
    assert (await raw.answer()).status == 200
    await assert_consistent(world.conn, s3, settings.s3_bucket, [sha(body)])


async def test_large_uploads_one_after_another_on_one_connection_are_stored_intact(
    raw: RawUpload, world: World, s3, settings: Settings
) -> None:
    bodies = [os.urandom(SIZE), os.urandom(SIZE - 1000)]
    for n, body in enumerate(bodies):
        await raw.send(put_head(path(world, f"{n}.bin"), world.tokens["developer"],
                                length=len(body)))
        await raw.send(body)
        assert (await raw.answer()).status == 201
    await assert_consistent(world.conn, s3, settings.s3_bucket, [sha(b) for b in bodies])


async def test_bytes_beyond_a_large_bodys_content_length_are_refused_with_400(
    raw: RawUpload, world: World, s3, settings: Settings
) -> None:
    body = os.urandom(SIZE)
    await raw.send(put_head(path(world, "a.bin"), world.tokens["developer"], length=SIZE - 100)
                   + body)
    answer = await raw.answer()
    assert answer.status == 400
    assert answer.json() == {
        "message": "400 Bad request - the body is longer than its Content-Length"
    }
    assert answer.headers["connection"] == "close"
    await assert_consistent(world.conn, s3, settings.s3_bucket, [])
