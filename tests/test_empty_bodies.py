"""Empty bodies through a real ``gateway serve`` process: a 0-byte upload reads nothing and
ends, however many come one after another or at once, with Content-Length: 0 or as a chunked
body that ends at once, and the process keeps answering everything else meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import GatewayProcess, World
from tests.faults.rawhttp import RawUpload, put_head

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
pytestmark = pytest.mark.timeout(120)


def file_path(world: World, version: str, name: str = "a.txt") -> str:
    return f"/api/v4/projects/{world.project_id}/packages/generic/empty/{version}/{name}"


async def health(session: aiohttp.ClientSession, gw: GatewayProcess) -> int:
    async with asyncio.timeout(10):
        async with session.get(gw.url + "/-/health") as resp:
            return resp.status


async def download(session: aiohttp.ClientSession, gw: GatewayProcess, world: World,
                   path: str) -> bytes:
    headers = {"PRIVATE-TOKEN": world.tokens["developer"]}
    async with asyncio.timeout(20):
        async with session.get(gw.url + path, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.read()


async def test_many_empty_uploads_in_a_row_each_answer_201_and_health_keeps_answering(
    gateway: GatewayProcess, world: World
) -> None:
    headers = {"PRIVATE-TOKEN": world.tokens["developer"]}
    async with aiohttp.ClientSession() as session:
        for n in range(20):
            async with asyncio.timeout(20):
                async with session.put(gateway.url + file_path(world, f"1.0.{n}"), data=b"",
                                       headers=headers) as resp:
                    assert resp.status == 201, await resp.text()
                    assert await resp.json() == {"message": "201 Created"}
            assert await health(session, gateway) == 200
        assert await download(session, gateway, world, file_path(world, "1.0.19")) == b""


async def test_empty_uploads_at_once_each_answer_201_with_the_empty_digest(
    gateway: GatewayProcess, world: World
) -> None:
    headers = {"PRIVATE-TOKEN": world.tokens["developer"]}

    async def put(n: int) -> dict:
        url = gateway.url + file_path(world, "2.0.0", f"f{n}.txt") + "?select=package_file"
        async with asyncio.timeout(30):
            async with session.put(url, data=b"", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

    async with aiohttp.ClientSession() as session:
        records = await asyncio.gather(*(put(n) for n in range(16)), health(session, gateway))
        assert records[-1] == 200
        assert {(r["size"], r["file_sha256"]) for r in records[:-1]} == {(0, EMPTY_SHA256)}
        assert await download(session, gateway, world, file_path(world, "2.0.0", "f7.txt")) == b""


async def test_chunked_bodies_that_end_at_once_answer_201_on_one_connection(
    gateway: GatewayProcess, world: World
) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    conn = await RawUpload("127.0.0.1", port).connect()
    for n in range(5):
        path = file_path(world, f"3.0.{n}")
        await conn.send(put_head(path, world.tokens["developer"], chunked=True) + b"0\r\n\r\n")
        answer = await asyncio.wait_for(conn.answer(), 20)
        assert answer.status == 201, answer.body
    await conn.abort()
    async with aiohttp.ClientSession() as session:
        assert await health(session, gateway) == 200
        assert await download(session, gateway, world, file_path(world, "3.0.4")) == b""


def test_the_issue_curl_lines_answer_201_201_200(
    gateway: GatewayProcess, world: World, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")  # curl sends Content-Length: 0 for it (/dev/null would go chunked)
    token = world.tokens["developer"]
    api = gateway.url + "/api/v4"
    for version, name in (("1.0.0", "a"), ("1.0.1", "b")):
        out = subprocess.run(
            ["curl", "--silent", "--fail-with-body", "--max-time", "20", "--header",
             f"PRIVATE-TOKEN: {token}", "--upload-file", str(empty), "--write-out",
             " %{http_code}",
             f"{api}/projects/{world.project_id}/packages/generic/e/{version}/{name}"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.stdout == '{"message":"201 Created"} 201', out
    with urllib.request.urlopen(gateway.url + "/-/health", timeout=10) as resp:
        assert resp.status == 200
