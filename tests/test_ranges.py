"""Byte ranges: 206 with Content-Range in proxy mode and through HEAD, If-Range, 416 with
``bytes */size``; resumed downloads with curl -C - and wget -c in both download modes."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from gateway.app import create_app
from tests.conftest import World
from tests.package_helpers import generic_url, hdr

BODY = os.urandom(1024 * 1024 + 11)
SIZE = len(BODY)


async def gateway_with_file(aiohttp_client, settings, world: World, mode: str):
    client = await aiohttp_client(create_app(settings.with_overrides(download_mode=mode)))
    resp = await client.put(generic_url(world.project_id), data=BODY,
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    return client


@pytest.fixture
async def proxy(aiohttp_client, settings, world: World):
    return await gateway_with_file(aiohttp_client, settings, world, "proxy")


async def get(client, world: World, method: str = "GET", **headers: str):
    return await client.request(method, generic_url(world.project_id), allow_redirects=False,
                                headers={**hdr(world.tokens["reporter"]), **headers})


@pytest.mark.parametrize(("spec", "first", "last"), [
    ("bytes=0-99", 0, 99),
    ("bytes=1000-", 1000, SIZE - 1),
    ("bytes=-500", SIZE - 500, SIZE - 1),
    (f"bytes=10-{SIZE + 1000}", 10, SIZE - 1),
    ("bytes=-99999999999", 0, SIZE - 1),
])
async def test_a_range_is_206_with_the_bytes_asked_for(proxy, world: World, spec: str,
                                                       first: int, last: int) -> None:
    resp = await get(proxy, world, Range=spec)
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert resp.headers["Content-Length"] == str(last - first + 1)
    assert await resp.read() == BODY[first : last + 1]


async def test_the_whole_file_advertises_accept_ranges(proxy, world: World) -> None:
    resp = await get(proxy, world)
    assert resp.status == 200
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert await resp.read() == BODY


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("spec", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}",
                                  "bytes=-0"])
async def test_an_unsatisfiable_range_is_416_with_the_size(proxy, world: World, method: str,
                                                           spec: str) -> None:
    resp = await get(proxy, world, method, Range=spec)
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{SIZE}"
    if method == "GET":
        assert await resp.json() == {"message": "416 Range Not Satisfiable"}


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "lines=1-2", "bytes=5-1", "bytes=x-",
                                  "bytes=\u0661-"])
async def test_ranges_not_served_get_the_whole_file(proxy, world: World, spec: str) -> None:
    resp = await get(proxy, world, Range=spec.encode().decode("latin-1"))
    assert resp.status == 200
    assert await resp.read() == BODY


async def test_if_range_with_the_current_etag_serves_the_range(proxy, world: World) -> None:
    etag = (await get(proxy, world, "HEAD")).headers["ETag"]
    resp = await get(proxy, world, Range="bytes=0-9", **{"If-Range": etag})
    assert resp.status == 206
    assert await resp.read() == BODY[:10]


async def test_if_range_with_the_current_date_serves_the_range(proxy, world: World) -> None:
    date = (await get(proxy, world, "HEAD")).headers["Last-Modified"]
    resp = await get(proxy, world, Range="bytes=0-9", **{"If-Range": date})
    assert resp.status == 206


@pytest.mark.parametrize("if_range", ['"' + "0" * 64 + '"', "Sat, 01 Jan 2000 00:00:00 GMT"])
async def test_if_range_that_no_longer_matches_sends_the_whole_file(proxy, world: World,
                                                                    if_range: str) -> None:
    resp = await get(proxy, world, Range="bytes=0-9", **{"If-Range": if_range})
    assert resp.status == 200
    assert await resp.read() == BODY


@pytest.mark.parametrize("mode", ["redirect", "proxy"])
async def test_head_answers_a_range_with_206(aiohttp_client, settings, world: World,
                                             mode: str) -> None:
    client = await gateway_with_file(aiohttp_client, settings, world, mode)
    resp = await get(client, world, "HEAD", Range="bytes=100-199")
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 100-199/{SIZE}"
    assert resp.headers["Content-Length"] == "100"
    assert resp.headers["Accept-Ranges"] == "bytes"


# --- resumed downloads with the real tools ----------------------------------------------------


async def run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode(errors="replace")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("mode", ["redirect", "proxy"])
async def test_curl_resumes_a_cut_download(aiohttp_client, settings, world: World,
                                           tmp_path: Path, mode: str) -> None:
    client = await gateway_with_file(aiohttp_client, settings, world, mode)
    out = tmp_path / "file.bin"
    out.write_bytes(BODY[:300_000])  # what a cut download left
    code, status, err = await run(
        "curl", "-sS", "--fail", "--location", "-C", "-", "-o", str(out),
        "-w", "%{http_code}", "-H", f"PRIVATE-TOKEN: {world.tokens['reporter']}",
        str(client.make_url(generic_url(world.project_id))),
    )
    assert code == 0, err
    assert status == "206"
    assert out.read_bytes() == BODY


@pytest.mark.skipif(shutil.which("wget") is None, reason="needs wget")
@pytest.mark.parametrize("mode", ["redirect", "proxy"])
async def test_wget_continues_a_cut_download(aiohttp_client, settings, world: World,
                                             tmp_path: Path, mode: str) -> None:
    client = await gateway_with_file(aiohttp_client, settings, world, mode)
    out = tmp_path / "file.bin"
    out.write_bytes(BODY[:300_000])
    code, _, err = await run(
        "wget", "-c", "-S", "-O", str(out), "--header",
        f"PRIVATE-TOKEN: {world.tokens['reporter']}",
        str(client.make_url(generic_url(world.project_id))),
    )
    assert code == 0, err
    assert "206 partial content" in err.lower(), err
    assert out.read_bytes() == BODY


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_resuming_a_complete_download_changes_nothing(proxy, world: World,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "file.bin"
    out.write_bytes(BODY)
    code, status, err = await run(
        "curl", "-sS", "-C", "-", "-o", str(out), "-w", "%{http_code}",
        "-H", f"PRIVATE-TOKEN: {world.tokens['reporter']}",
        str(proxy.make_url(generic_url(world.project_id))),
    )
    assert code == 0, err
    assert status == "416"
    assert out.read_bytes() == BODY
