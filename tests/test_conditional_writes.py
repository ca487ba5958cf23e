"""Conditional uploads: ``If-None-Match: *`` stores only a new file name, ``If-Match: <etag>``
only over the file last seen; decided under the version's advisory lock (racing uploads on
two gateways: exactly one wins)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import World, start_gateway
from tests.faults.checks import assert_consistent
from tests.package_helpers import generic_url, hdr

PRECONDITION_FAILED = {"message": "412 Precondition Failed"}


def etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()}"'


async def put(client, world: World, body: bytes, **headers: str):
    return await client.put(generic_url(world.project_id), data=body,
                            headers={**hdr(world.tokens["developer"]), **headers})


async def test_if_none_match_star_stores_a_new_file(client, world: World) -> None:
    resp = await put(client, world, b"first", **{"If-None-Match": "*"})
    assert resp.status == 201
    assert await resp.json() == {"message": "201 Created"}


async def test_if_none_match_star_refuses_an_existing_name(client, world: World, s3,
                                                           settings) -> None:
    assert (await put(client, world, b"first")).status == 201
    resp = await put(client, world, b"second", **{"If-None-Match": "*"})
    assert resp.status == 412
    assert await resp.json() == PRECONDITION_FAILED
    await assert_consistent(world.conn, s3, settings.s3_bucket,
                            [hashlib.sha256(b"first").hexdigest()])


async def test_another_name_in_the_version_does_not_count(client, world: World) -> None:
    await client.put(generic_url(world.project_id, file="other.txt"), data=b"x",
                     headers=hdr(world.tokens["developer"]))
    assert (await put(client, world, b"y", **{"If-None-Match": "*"})).status == 201


async def test_if_match_of_the_current_etag_replaces_the_file(client, world: World) -> None:
    await put(client, world, b"v1")
    resp = await put(client, world, b"v2", **{"If-Match": etag(b"v1")})
    assert resp.status == 201
    head = await client.head(generic_url(world.project_id),
                             headers=hdr(world.tokens["reporter"]))
    assert head.headers["ETag"] == etag(b"v2")


async def test_if_match_of_a_stale_etag_is_412(client, world: World) -> None:
    await put(client, world, b"v1")
    await put(client, world, b"v2")
    resp = await put(client, world, b"v3", **{"If-Match": etag(b"v1")})
    assert resp.status == 412
    assert await resp.json() == PRECONDITION_FAILED
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 2


@pytest.mark.parametrize("value", ['"' + "0" * 64 + '"', "*"])
async def test_if_match_without_any_file_is_412(client, world: World, value: str) -> None:
    resp = await put(client, world, b"v1", **{"If-Match": value})
    assert resp.status == 412
    assert await world.conn.fetchval("SELECT count(*) FROM packages") == 0


async def test_if_match_with_a_weak_etag_never_matches(client, world: World) -> None:
    await put(client, world, b"v1")
    resp = await put(client, world, b"v2", **{"If-Match": "W/" + etag(b"v1")})
    assert resp.status == 412


async def test_if_match_that_cannot_be_parsed_is_412(client, world: World) -> None:
    await put(client, world, b"v1")
    resp = await put(client, world, b"v2", **{"If-Match": "not-an-etag"})
    assert resp.status == 412


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_a_refused_conditional_upload_sends_no_body(client, world: World,
                                                          tmp_path: Path) -> None:
    await put(client, world, b"first")
    file = tmp_path / "big.bin"
    file.write_bytes(os.urandom(4 * 1024 * 1024))
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}",
        "-H", f"PRIVATE-TOKEN: {world.tokens['developer']}", "-H", "Expect: 100-continue",
        "-H", "If-None-Match: *", "--expect100-timeout", "30", "-T", str(file),
        str(client.make_url(generic_url(world.project_id))), stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    status, sent = out.decode().split()
    assert (int(status), int(float(sent))) == (412, 0)


async def test_twelve_racing_conditional_uploads_on_two_gateways_store_one(
    settings, world: World, s3, tmp_path: Path
) -> None:
    gateways = [start_gateway(settings, tmp_path) for _ in range(2)]
    bodies = [os.urandom(200_000) + bytes([i]) for i in range(12)]
    try:
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> int:
                url = gateways[i % 2].url + generic_url(world.project_id)
                async with session.put(url, data=bodies[i], headers={
                    **hdr(world.tokens["developer"]), "If-None-Match": "*",
                }) as resp:
                    if resp.status == 412:
                        assert await resp.json() == PRECONDITION_FAILED
                    return resp.status

            statuses = await asyncio.gather(*(one(i) for i in range(12)))
    finally:
        for gw in gateways:
            gw.stop()
    assert sorted(statuses) == [201] + [412] * 11
    winner = bodies[statuses.index(201)]
    await assert_consistent(world.conn, s3, settings.s3_bucket,
                            [hashlib.sha256(winner).hexdigest()])
