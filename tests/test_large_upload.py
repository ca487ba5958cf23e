"""Chunked uploads of 1 and 6 GiB through ``gateway serve`` and back through the redirect, with
the gateway's peak memory, which must not grow with the file. S3 is ``rclone serve s3`` on a
scratch folder: moto would hold the object in memory twice. Run with ``pytest --large``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.config import GiB, MiB, Settings
from gateway.devtools.s3servers import RcloneS3Server
from tests.conftest import World, s3_client, start_gateway

CHUNK = 4 * MiB
PEAK_RSS_LIMIT = 160 * MiB


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.large
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("size", [1 * GiB, 6 * GiB], ids=["1GiB", "6GiB"])
async def test_chunked_upload_round_trips_with_flat_memory(
    settings: Settings, world: World, tmp_path: Path, record_property, size: int
) -> None:
    key_id = os.environ["AWS_ACCESS_KEY_ID"]
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    with RcloneS3Server(tmp_path / "s3", key_id, secret) as rclone:
        s3_client(rclone.endpoint_url).create_bucket(Bucket="large")
        local = settings.with_overrides(s3_endpoint_url=rclone.endpoint_url, s3_bucket="large")
        gw = start_gateway(local, tmp_path)
        try:
            block = os.urandom(CHUNK)
            sent = hashlib.sha256()

            async def body() -> AsyncIterator[bytes]:
                for i in range(size // CHUNK):
                    chunk = i.to_bytes(8, "big") + block[8:]  # every chunk distinct
                    sent.update(chunk)
                    yield chunk

            url = (f"{gw.url}/api/v4/projects/{world.project_id}/packages/generic/big/1.0/"
                   "big.bin")
            headers = {"PRIVATE-TOKEN": world.tokens["developer"]}
            timeout = aiohttp.ClientTimeout(total=3000, sock_read=300)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.put(url + "?select=package_file", data=body(),
                                       headers=headers) as resp:
                    record = await resp.json()
                    assert resp.status == 200, record
                rss = peak_rss(gw.proc.pid)
                received = hashlib.sha256()
                async with session.get(url, headers=headers) as resp:
                    assert resp.status == 200
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        received.update(chunk)
        finally:
            gw.stop()
    record_property("gateway_peak_rss_mib", round(rss / MiB, 1))
    print(f"gateway peak RSS for a {size // GiB} GiB upload: {rss / MiB:.1f} MiB")
    assert record["size"] == size
    assert record["file_sha256"] == sent.hexdigest()
    assert received.hexdigest() == sent.hexdigest()
    assert rss <= PEAK_RSS_LIMIT
