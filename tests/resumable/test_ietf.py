"""The IETF resumable upload protocol (interop version 8) on the same engine, and the project's
client, ``gateway upload``, interrupted and resumed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from gateway.config import MiB
from tests.conftest import ROOT, GatewayProcess, World
from tests.faults.rawhttp import RawUpload
from tests.resumable.common import digests, file_url, leftovers, make_file, package_file
from tests.resumable.conftest import Served

DRAFT = {"Upload-Draft-Interop-Version": "8"}


def _auth(world: World) -> dict[str, str]:
    return {"PRIVATE-TOKEN": world.tokens["developer"]}


def _client(gateway: GatewayProcess, world: World, path: Path, *extra: str,
            state: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "upload", str(path),
         file_url(gateway.url, world.project_id) + "?select=package_file", *extra],
        cwd=ROOT, env={**gateway.env, "PACKGATE_TOKEN": world.tokens["developer"],
                       "XDG_STATE_HOME": str(state)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_the_client_uploads_a_file_with_a_plain_puts_digests(
        gateway: GatewayProcess, world: World, tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    want = make_file(path, 13 * MiB + 1)
    out, err = _client(gateway, world, path, "--chunk-size", "5M",
                       state=tmp_path).communicate(timeout=120)
    record = json.loads(out)
    assert digests(record) == want, err
    assert "PRIVATE-TOKEN" not in err and world.tokens["developer"] not in out + err


def _on_terminal(argv: list[str], env: dict[str, str]) -> tuple[bytes, bytes]:
    """Run ``argv`` with its stderr on a pseudo-terminal: (stdout, what the terminal got)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    out, _ = proc.communicate(timeout=120)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the child's end is closed
        while chunk := os.read(controller, 65536):
            shown += chunk
    os.close(controller)
    return out, shown


async def test_the_client_shows_progress_on_a_terminal(
        gateway: GatewayProcess, world: World, tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    make_file(path, 3 * MiB)
    out, shown = _on_terminal(
        [sys.executable, "-m", "gateway", "upload", str(path),
         file_url(gateway.url, world.project_id)],
        {**gateway.env, "PACKGATE_TOKEN": world.tokens["developer"],
         "XDG_STATE_HOME": str(tmp_path)})
    assert json.loads(out) == {"message": "201 Created"}
    assert b"100.0%  3.0 MiB / 3.0 MiB" in shown
    assert world.tokens["developer"].encode() not in shown


async def test_the_client_killed_mid_upload_resumes_with_resume(
        gateway: GatewayProcess, world: World, tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    want = make_file(path, 32 * MiB)
    # 8 MiB requests: the offset advances at each request's end whatever the part size, so
    # the client is killed with requests still unsent.
    first = _client(gateway, world, path, "--limit-rate", "4M", "--chunk-size", "8M",
                    state=tmp_path)
    deadline = time.monotonic() + 60
    # Killed once the server has acknowledged part of it (the offset advances part by part).
    while await world.conn.fetchval(
            "SELECT coalesce(max(upload_offset), 0) FROM upload_sessions") < 8 * MiB:
        assert time.monotonic() < deadline and first.poll() is None
        await asyncio.sleep(0.1)
    first.kill()
    first.wait()
    offset = await world.conn.fetchval("SELECT upload_offset FROM upload_sessions")
    assert 8 * MiB <= offset < 32 * MiB
    out, err = _client(gateway, world, path, "--resume", state=tmp_path).communicate(
        timeout=120)
    assert digests(json.loads(out)) == want, err
    # One session only: the second run continued the first's.
    assert await world.conn.fetchval("SELECT count(*) FROM upload_sessions") == 1


async def test_the_client_starts_again_when_the_server_lost_the_upload(
        gateway: GatewayProcess, world: World, tmp_path: Path, s3, bucket: str) -> None:
    path = tmp_path / "blob.bin"
    want = make_file(path, 24 * MiB)
    run = _client(gateway, world, path, "--limit-rate", "4M", "--chunk-size", "8M",
                  state=tmp_path)
    deadline = time.monotonic() + 60
    while await world.conn.fetchval(
            "SELECT coalesce(max(upload_offset), 0) FROM upload_sessions") < 8 * MiB:
        assert time.monotonic() < deadline and run.poll() is None
        await asyncio.sleep(0.1)
    # An operator (or a lifecycle rule) aborts the session's multipart upload in S3.
    for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    out, err = run.communicate(timeout=120)
    assert digests(json.loads(out)) == want, err
    assert "starting again from the first byte" in err
    # The lost session is gone; only the new one, committed, is left.
    assert await world.conn.fetchval("SELECT count(*) FROM upload_sessions") == 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_head_gives_the_offset_and_patch_appends_until_complete(
        served: Served, world: World) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(file_url(served.url, world.project_id), headers={
                **_auth(world), **DRAFT, "Upload-Complete": "?0", "Upload-Length": "6"},
                data=b"abc") as resp:
            assert resp.status == 201
            url = served.url + resp.headers["Location"]
            assert resp.headers["Upload-Offset"] == "3"
        async with http.head(url, headers={**_auth(world), **DRAFT}) as resp:
            assert resp.status == 204
            assert resp.headers["Upload-Offset"] == "3"
            assert resp.headers["Upload-Complete"] == "?0"
            assert resp.headers["Upload-Length"] == "6"
            assert resp.headers["Cache-Control"] == "no-store"
            assert "max-age=" in resp.headers["Upload-Limit"]
        async with http.patch(url, data=b"def", headers={
                **_auth(world), **DRAFT, "Upload-Offset": "3", "Upload-Complete": "?1",
                "Content-Type": "application/partial-upload"}) as resp:
            assert resp.status == 201
            assert await resp.json() == {"message": "201 Created"}
        async with http.head(url, headers=_auth(world)) as resp:
            assert resp.headers["Upload-Complete"] == "?1"
            assert resp.headers["Upload-Offset"] == "6"
    record = await package_file(served.url, world.project_id, world.tokens["developer"])
    assert record is not None and record["file_sha256"] == hashlib.sha256(b"abcdef").hexdigest()


async def test_a_wrong_offset_is_409_with_the_expected_offset(
        served: Served, world: World) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.put(file_url(served.url, world.project_id), data=b"abcd", headers={
                **_auth(world), "Upload-Complete": "?0"}) as resp:
            assert resp.status == 201
            url = served.url + resp.headers["Location"]
        async with http.patch(url, data=b"x", headers={
                **_auth(world), "Upload-Offset": "1", "Upload-Complete": "?1",
                "Content-Type": "application/partial-upload"}) as resp:
            assert resp.status == 409
            problem = await resp.json()
    assert problem["type"].endswith("#mismatching-upload-offset")
    assert (problem["expected-offset"], problem["provided-offset"]) == (4, 1)


async def test_an_ordinary_put_with_upload_complete_is_one_whole_upload(
        served: Served, world: World) -> None:
    url = file_url(served.url, world.project_id) + "?select=package_file"
    headers = {**_auth(world), "Upload-Complete": "?1"}
    async with aiohttp.ClientSession() as http, http.put(url, data=b"whole",
                                                         headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["file_sha256"] == hashlib.sha256(b"whole").hexdigest()
        assert resp.headers["Location"].startswith(
            f"/api/v4/projects/{world.project_id}/packages/uploads/")


async def test_104_tells_the_upload_url_before_the_body_is_read(
        served: Served, world: World) -> None:
    port = served.port
    raw = RawUpload("127.0.0.1", port)
    await raw.connect()
    path = f"/api/v4/projects/{world.project_id}/packages/generic/data/1.0.0/blob.bin"
    await raw.send(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nPRIVATE-TOKEN: "
        f"{world.tokens['developer']}\r\nUpload-Draft-Interop-Version: 8\r\n"
        "Upload-Complete: ?0\r\nContent-Length: 10\r\n\r\nabcd".encode())
    interim = await raw.answer(timeout=10)
    assert interim.status == 104
    assert interim.headers["upload-draft-interop-version"] == "8"
    assert interim.headers["location"].startswith(f"/api/v4/projects/{world.project_id}/")
    await raw.abort()  # the client goes away after 4 bytes
    async with aiohttp.ClientSession() as http:
        url = served.url + interim.headers["location"]
        for _ in range(50):
            async with http.head(url, headers=_auth(world)) as resp:
                if resp.status == 204:
                    break
            await asyncio.sleep(0.1)
        assert resp.headers["Upload-Offset"] == "0"  # nothing acknowledged: no part yet


async def test_delete_cancels_and_leaves_nothing(
        served: Served, world: World, s3, bucket: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(file_url(served.url, world.project_id), data=b"y" * (6 * MiB),
                             headers={**_auth(world), "Upload-Complete": "?0"}) as resp:
            assert resp.status == 201
            url = served.url + resp.headers["Location"]
        async with http.delete(url, headers=_auth(world)) as resp:
            assert resp.status == 204
        async with http.head(url, headers=_auth(world)) as resp:
            assert resp.status == 404
    assert await leftovers(world.conn, s3, bucket) == {
        "sessions": 0, "pending": 0, "objects": 0, "multipart": 0}
