"""A resumable upload outlives the gateway that took its first half: tuspy sends 40 % to
gateway-2, gateway-2 is SIGKILLed in the middle of the next chunk, and the upload resumes
through nginx on the survivors, ending with the file's exact digests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from tusclient import client as tus_client

from gateway.config import MiB
from gateway.devtools.cluster import Cluster
from gateway.devtools.instances import GatewayInstance
from tests.cluster.conftest import Api, unique
from tests.resumable.common import make_file

SIZE = 40 * MiB
CHUNK = 8 * MiB


@pytest.fixture
def victim(cluster: Cluster) -> Iterator[GatewayInstance]:
    """gateway-2, started again after the test and back in nginx's rotation."""
    instance = cluster.instance("gateway-2")
    yield instance
    if instance.pid is not None:
        os.kill(instance.pid, signal.SIGCONT)
    else:
        cluster.restart("gateway-2")
    assert cluster.rotation is not None
    assert cluster.rotation.wait_until(lambda out: not out, 60), "gateway-2 not back"


async def test_upload_begun_on_a_killed_gateway_resumes_on_another_with_exact_digests(
    cluster: Cluster, victim: GatewayInstance, api: Api, db: asyncpg.Connection,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    path = tmp_path / "blob.bin"
    want = make_file(path, SIZE)
    name = unique("resume")
    create = api.file(name, "1.0.0", "blob.bin").replace(api.base, victim.url) + "/uploads"
    first = tus_client.TusClient(create, headers=api.auth).uploader(str(path), chunk_size=CHUNK)
    first.upload(stop_at=int(SIZE * 0.4))
    session_path = first.url.removeprefix(victim.url)
    acknowledged = first.offset

    # One more chunk is on its way to gateway-2, slowly, when it dies (holding the session).
    with path.open("rb") as f:
        f.seek(acknowledged)
        chunk = f.read(CHUNK)
    sending = asyncio.create_task(_patch_slowly(http, first.url, api.auth, acknowledged, chunk))
    await asyncio.sleep(1.0)
    assert not sending.done()
    victim.kill()
    assert not isinstance(await sending, int)  # cut: no answer

    # The survivors continue it, through nginx: offset, hash state and parts from the row.
    url = api.base + session_path
    resumed = tus_client.TusClient(url, headers=api.auth).uploader(
        str(path), url=url, chunk_size=CHUNK, retries=5, retry_delay=1)
    assert acknowledged <= resumed.offset < SIZE
    resumed.upload()

    row = await db.fetchrow(
        "SELECT f.size, f.file_md5, f.file_sha1, f.file_sha256 FROM package_files f"
        " JOIN packages p ON p.id = f.package_id WHERE p.name = $1", name)
    assert dict(row) == {"size": SIZE, **want}
    # The digests a user sees equal those of the bytes (a plain PUT's).
    async with http.head(api.file(name, "1.0.0", "blob.bin"), headers=api.auth) as resp:
        assert resp.headers["X-Checksum-SHA256"] == hashlib.sha256(path.read_bytes()).hexdigest()


async def _patch_slowly(http: aiohttp.ClientSession, url: str, auth: dict[str, str],
                        offset: int, data: bytes) -> int | Exception:
    async def body():
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]
            await asyncio.sleep(0.05)

    headers = {**auth, "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
               "Content-Type": "application/offset+octet-stream",
               "Content-Length": str(len(data))}
    try:
        async with http.patch(url, data=body(), headers=headers) as resp:
            return resp.status
    except aiohttp.ClientError as exc:
        return exc
