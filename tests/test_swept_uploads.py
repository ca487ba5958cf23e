"""Uploads whose bytes the sweeper or a frozen S3 took from under them (found by the chaos soak,
benchmarks/soak): the client gets a JSON 503, and nothing is left once the sweeper has run."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from gateway.app import create_app
from gateway.config import MiB, Settings
from gateway.devtools.s3servers import MotoServer, RcloneS3Server
from tests.conftest import World, s3_client
from tests.faults.checks import assert_consistent, wait_for
from tests.test_failures import BIG, FAST, SETTLE, dev, gated, multipart_started, path


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.with_overrides(**FAST)


@pytest.fixture
async def gw(aiohttp_client, fast: Settings, world: World):
    return await aiohttp_client(create_app(fast))


async def test_upload_whose_multipart_upload_was_aborted_answers_503_not_500(
    aiohttp_client, world: World, fast: Settings, tmp_path: Path
) -> None:
    # What the sweeper does to an upload whose heartbeat could not be written for a stale
    # window (PostgreSQL was down): it aborts the multipart upload while the body still flows.
    # rclone, like S3, then answers the next UploadPart with NoSuchUpload (moto with a 500).
    with RcloneS3Server(tmp_path / "s3", "AKIDLOCAL", "secret-local") as rclone:
        s3 = boto3.client(
            "s3", endpoint_url=rclone.endpoint_url, region_name="us-east-1",
            aws_access_key_id="AKIDLOCAL", aws_secret_access_key="secret-local",
            config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=fast.s3_bucket)
        gw = await aiohttp_client(create_app(fast.with_overrides(
            s3_endpoint_url=rclone.endpoint_url, s3_access_key_id="AKIDLOCAL",
            s3_secret_access_key="secret-local")))
        await _aborted_under_a_live_upload(gw, world, s3, fast.s3_bucket)


async def _aborted_under_a_live_upload(gw, world: World, s3, bucket: str) -> None:
    body, gate = os.urandom(BIG), asyncio.Event()
    upload = asyncio.create_task(gw.put(path(world), data=gated(body, 6 * MiB, gate),
                                        headers=dev(world)))
    await wait_for(lambda: multipart_started(world.conn), "a multipart upload started")
    for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    gate.set()
    resp = await asyncio.wait_for(upload, 60)
    assert resp.status == 503
    assert await resp.json() == {
        "message": "503 Service Unavailable - the upload was interrupted, please retry"
    }
    await assert_consistent(world.conn, s3, bucket, [], within=SETTLE)


@pytest.fixture(scope="module")
def frozen_moto() -> Iterator[MotoServer]:
    """An S3 server this module may freeze (never the one the rest of the suite shares)."""
    with MotoServer() as server:
        yield server


async def test_put_object_timed_out_leaves_its_pending_row_to_the_sweeper(
    aiohttp_client, frozen_moto: MotoServer, fast: Settings, world: World,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A PutObject that timed out may still be carried out by S3 after the upload's own
    # clean-up has deleted the key (both wait in the frozen server; it may run them in either
    # order). So the clean-up keeps the pending row: the sweeper, a stale window later,
    # deletes whatever landed and only then drops the row.
    s3 = s3_client(frozen_moto.endpoint_url)
    s3.create_bucket(Bucket=fast.s3_bucket)
    settings = fast.with_overrides(s3_endpoint_url=frozen_moto.endpoint_url,
                                   s3_request_deadline=5.0)
    client = await aiohttp_client(create_app(settings))
    caplog.set_level(logging.WARNING, logger="gateway.storage.s3")

    async def timed_out() -> bool:
        return any("s3 put_object failed" in r.getMessage() for r in caplog.records)

    frozen_moto.pause()
    try:
        upload = asyncio.create_task(client.put(path(world), data=os.urandom(MiB),
                                                headers=dev(world)))
        await wait_for(timed_out, "the PutObject's deadline")
        # The clean-up's DeleteObject now waits in the frozen server (up to 5 s) beside it.
        await asyncio.sleep(1)
    finally:
        frozen_moto.resume()
    resp = await asyncio.wait_for(upload, 60)
    assert resp.status == 503
    assert await resp.json() == {
        "message": "503 Service Unavailable - object storage is unavailable"
    }
    assert await world.conn.fetchval("SELECT count(*) FROM pending_uploads") == 1
    await assert_consistent(world.conn, s3, settings.s3_bucket, [], within=SETTLE)
