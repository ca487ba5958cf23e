"""Uploads whose bytes the sweeper or a frozen S3 took from under them (found by the chaos soak,
benchmarks/soak): the client gets a JSON 503, and nothing is left once the sweeper has run."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from gateway.app import create_app
from gateway.config import MiB, Settings
from gateway.devtools.s3servers import RcloneS3Server
from tests.conftest import World
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
