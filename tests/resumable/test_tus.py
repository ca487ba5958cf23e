"""tus 1.0 with tuspy, a real client, against `gateway serve`: chunks, a killed client that
resumes, offsets, concurrent appends, checksums, termination."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from tusclient import client as tus_client

from gateway.config import MiB
from tests.conftest import ROOT, GatewayProcess, World
from tests.faults.rawhttp import RawUpload
from tests.resumable.common import digests, file_url, leftovers, make_file, package_file
from tests.resumable.conftest import Served

TUS = {"Tus-Resumable": "1.0.0"}


def uploads_url(gateway: GatewayProcess | Served, world: World, **kw: str) -> str:
    return file_url(gateway.url, world.project_id, **kw) + "/uploads"


def tus(gateway: GatewayProcess | Served, world: World, role: str = "developer",
        **kw: str) -> tus_client.TusClient:
    return tus_client.TusClient(uploads_url(gateway, world, **kw),
                                headers={"PRIVATE-TOKEN": world.tokens[role]})


async def create(http: aiohttp.ClientSession, gateway: GatewayProcess | Served, world: World,
                 length: int, role: str = "developer", **kw: str) -> str:
    headers = {**TUS, "PRIVATE-TOKEN": world.tokens[role], "Upload-Length": str(length)}
    async with http.post(uploads_url(gateway, world, **kw), headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        return gateway.url + resp.headers["Location"]


def patch_headers(world: World, offset: int, role: str = "developer") -> dict[str, str]:
    return {**TUS, "PRIVATE-TOKEN": world.tokens[role], "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"}


async def test_tuspy_upload_in_chunks_has_the_digests_of_a_plain_put(
        gateway: GatewayProcess, world: World, tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    # 8 MiB chunks, 8 MiB parts, and a 4 MiB tail that becomes the last part.
    want = make_file(path, 20 * MiB)
    tus(gateway, world).uploader(str(path), chunk_size=8 * MiB).upload()
    record = await package_file(gateway.url, world.project_id, world.tokens["developer"])
    assert record is not None and digests(record) == want
    assert record["size"] == 20 * MiB


async def test_small_chunks_below_the_minimum_part_are_kept_as_a_tail(
        gateway: GatewayProcess, world: World, tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    want = make_file(path, 11 * MiB + 5)
    tus(gateway, world).uploader(str(path), chunk_size=3 * MiB).upload()
    record = await package_file(gateway.url, world.project_id, world.tokens["developer"])
    assert record is not None and digests(record) == want


async def test_client_killed_at_40_percent_resumes_with_the_right_sha256(
        gateway: GatewayProcess, world: World, tmp_path: Path) -> None:
    await _kill_and_resume(gateway, world, tmp_path, 40 * MiB, 8 * MiB)


@pytest.mark.large
async def test_200_mib_in_16_mib_chunks_killed_at_40_percent_resumes(
        gateway: GatewayProcess, world: World, tmp_path: Path) -> None:
    await _kill_and_resume(gateway, world, tmp_path, 200 * MiB, 16 * MiB)


async def _kill_and_resume(gateway: GatewayProcess, world: World, tmp_path: Path, size: int,
                           chunk: int) -> None:
    path = tmp_path / "blob.bin"
    want = make_file(path, size)
    _kill_client_and_resume(uploads_url(gateway, world), path, size, chunk,
                            world.tokens["developer"])
    record = await package_file(gateway.url, world.project_id, world.tokens["developer"])
    assert record is not None and digests(record) == want


def _kill_client_and_resume(create_url: str, path: Path, size: int, chunk: int,
                            token: str) -> None:
    """tuspy in a process of its own, SIGKILLed once 40 % is acknowledged (and a moment into
    the next chunk), then a new tuspy client resumes the same upload from its URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.resumable.tus_child", create_url,
         str(path), token, str(chunk)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        while int(child.stdout.readline() or size) < size * 0.4:
            pass
        # At once: the next chunk is on its way, and on a fast machine a pause here would let
        # the remaining chunks finish before the kill.
        child.kill()
    finally:
        child.kill()
        child.wait()
    # The killed client's last request may still be finishing on the gateway (409 while it
    # holds the session): tuspy retries, as a client resuming after a crash would.
    uploader = tus_client.TusClient(url, headers={"PRIVATE-TOKEN": token}).uploader(
        str(path), url=url, chunk_size=chunk, retries=5, retry_delay=1)
    assert size * 0.4 <= uploader.offset < size
    uploader.upload()


async def test_wrong_offset_is_answered_409_with_the_right_offset(
        served: Served, world: World) -> None:
    async with aiohttp.ClientSession() as http:
        url = await create(http, served, world, 10)
        async with http.patch(url, data=b"abcd", headers=patch_headers(world, 0)) as resp:
            assert resp.status == 204
            assert resp.headers["Upload-Offset"] == "4"
        async with http.patch(url, data=b"efgh", headers=patch_headers(world, 2)) as resp:
            assert resp.status == 409
            assert resp.headers["Upload-Offset"] == "4"
            body = await resp.json()
            assert body["expected-offset"] == 4 and body["provided-offset"] == 2
        async with http.head(url, headers={**TUS, **_token(world)}) as resp:
            assert resp.status == 200
            assert resp.headers["Upload-Offset"] == "4"
            assert resp.headers["Upload-Length"] == "10"
            assert resp.headers["Cache-Control"] == "no-store"


def _token(world: World, role: str = "developer") -> dict[str, str]:
    return {"PRIVATE-TOKEN": world.tokens[role]}


async def test_a_second_concurrent_append_is_refused_with_409(
        served: Served, world: World) -> None:
    release = asyncio.Event()

    async def slow_body():
        yield b"x" * 1024
        await release.wait()
        yield b"y" * 1024

    async with aiohttp.ClientSession() as http:
        url = await create(http, served, world, 2048)
        first = asyncio.create_task(http.patch(
            url, data=slow_body(), headers={**patch_headers(world, 0), "Content-Length": "2048"}))
        await asyncio.sleep(1.0)  # the first append holds the session
        async with http.patch(url, data=b"z", headers=patch_headers(world, 0)) as resp:
            assert resp.status == 409
        release.set()
        async with await first as resp:
            assert resp.status == 204
            assert resp.headers["Upload-Offset"] == "2048"


async def test_expect_100_continue_is_answered_only_at_the_right_offset(
        served: Served, world: World) -> None:
    async with aiohttp.ClientSession() as http:
        url = await create(http, served, world, 3)
    path = url.removeprefix(served.url)
    head = ("PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nPRIVATE-TOKEN: {token}\r\n"
            "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            "Upload-Offset: {offset}\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    wrong = await RawUpload("127.0.0.1", served.port).connect()
    await wrong.send(head.format(path=path, token=world.tokens["developer"], offset=2).encode())
    assert (await wrong.answer(timeout=10)).status == 409  # no body was asked for
    wrong.close()
    right = await RawUpload("127.0.0.1", served.port).connect()
    await right.send(head.format(path=path, token=world.tokens["developer"], offset=0).encode())
    assert (await right.answer(timeout=10)).status == 100
    await right.send(b"abc")
    answer = await right.answer(timeout=10)
    assert answer.status == 204 and answer.headers["upload-offset"] == "3"
    right.close()


async def test_creation_with_upload_and_hidden_status_from_metadata(
        served: Served, world: World) -> None:
    data = b"hello tus"
    headers = {**TUS, **_token(world), "Upload-Length": str(len(data)),
               "Upload-Metadata": "status " + base64.b64encode(b"hidden").decode(),
               "Content-Type": "application/offset+octet-stream"}
    async with aiohttp.ClientSession() as http:
        async with http.post(uploads_url(served, world), data=data, headers=headers) as resp:
            assert resp.status == 201
            assert resp.headers["Upload-Offset"] == str(len(data))
            assert "Upload-Expires" in resp.headers
        async with http.get(f"{served.url}/api/v4/projects/{world.project_id}/packages",
                            params={"status": "hidden"}, headers=_token(world)) as resp:
            assert [p["name"] for p in await resp.json()] == ["data"]


async def test_a_checksum_mismatch_is_460_and_keeps_nothing_of_the_request(
        served: Served, world: World) -> None:
    wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    right = base64.b64encode(hashlib.sha1(b"abc").digest()).decode()
    async with aiohttp.ClientSession() as http:
        url = await create(http, served, world, 3)
        async with http.patch(url, data=b"abc", headers={
                **patch_headers(world, 0), "Upload-Checksum": f"sha1 {wrong}"}) as resp:
            assert resp.status == 460
        async with http.head(url, headers={**TUS, **_token(world)}) as resp:
            assert resp.headers["Upload-Offset"] == "0"
        async with http.patch(url, data=b"abc", headers={
                **patch_headers(world, 0), "Upload-Checksum": f"sha1 {right}"}) as resp:
            assert resp.status == 204
    record = await package_file(served.url, world.project_id, world.tokens["developer"])
    assert record is not None and record["file_sha256"] == hashlib.sha256(b"abc").hexdigest()


async def test_termination_leaves_no_row_object_or_multipart_upload(
        served: Served, world: World, s3, bucket: str) -> None:
    async with aiohttp.ClientSession() as http:
        url = await create(http, served, world, 20 * MiB)
        async with http.patch(url, data=b"x" * (9 * MiB), headers=patch_headers(world, 0)) as resp:
            assert resp.status == 204
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
        async with http.delete(url, headers={**TUS, **_token(world)}) as resp:
            assert resp.status == 204
        async with http.head(url, headers={**TUS, **_token(world)}) as resp:
            assert resp.status == 404
    assert await leftovers(world.conn, s3, bucket) == {
        "sessions": 0, "pending": 0, "objects": 0, "multipart": 0}


async def test_options_advertises_version_extensions_and_checksums(
        served: Served, world: World) -> None:
    async with aiohttp.ClientSession() as http, http.options(
            uploads_url(served, world), headers=_token(world)) as resp:
        assert resp.status == 204
        assert resp.headers["Tus-Version"] == "1.0.0"
        assert set(resp.headers["Tus-Extension"].split(",")) == {
            "creation", "creation-with-upload", "termination", "expiration", "checksum"}
        assert resp.headers["Tus-Checksum-Algorithm"] == "sha1,md5"


async def test_a_completion_refused_as_a_duplicate_leaves_nothing_of_it(
        gateway: GatewayProcess, world: World, tmp_path: Path, s3, bucket: str) -> None:
    await world.conn.execute("UPDATE namespaces SET generic_duplicates_allowed = false")
    async with aiohttp.ClientSession() as http:
        late = await create(http, gateway, world, 4)
        # Another upload of the same file commits first.
        path = tmp_path / "blob.bin"
        make_file(path, 6 * MiB)
        tus(gateway, world).uploader(str(path), chunk_size=4 * MiB).upload()
        committed = await leftovers(world.conn, s3, bucket)
        async with http.patch(late, data=b"abcd", headers=patch_headers(world, 0)) as resp:
            assert resp.status == 400
            assert await resp.json() == {
                "message": "400 Bad request - Duplicate package is not allowed"}
        async with http.head(late, headers={**TUS, **_token(world)}) as resp:
            assert resp.status == 404
        # A new one is refused at creation, as a PUT is before its body.
        headers = {**TUS, **_token(world), "Upload-Length": "4"}
        async with http.post(uploads_url(gateway, world), headers=headers) as resp:
            assert resp.status == 400
    assert await leftovers(world.conn, s3, bucket) == {**committed,
                                                       "sessions": committed["sessions"] - 1}
