"""A session whose multipart upload S3 no longer has (aborted by a lifecycle rule, a bucket
clean-up, an operator): its next request is a 404 with GitLab's JSON, and nothing of the session
is left, so that a client starts again rather than retrying for ever. The fault is real: the
upload is aborted in S3 itself between two requests. rclone answers the gateway's next
UploadPart or CompleteMultipartUpload with NoSuchUpload, as S3 does; moto answers them with a
500 and only its ListParts with NoSuchUpload, which the gateway then asks."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from gateway.app import create_app
from gateway.config import MiB, Settings
from gateway.devtools.s3servers import RcloneS3Server
from tests.conftest import World
from tests.resumable.common import leftovers

GENERIC = "/api/v4/projects/{pid}/packages/generic/data/1.0.0/blob.bin"
TUS = {"Tus-Resumable": "1.0.0"}
NOT_FOUND = {"message": "404 Upload Not Found"}
NOTHING = {"sessions": 0, "pending": 0, "objects": 0, "multipart": 0}


@dataclass
class Served:
    client: Any  # aiohttp's test client
    s3: Any  # boto3, straight to the S3 server
    bucket: str


@pytest.fixture(params=["rclone", "moto"])
async def served(request: pytest.FixtureRequest, aiohttp_client, settings: Settings,
                 world: World, tmp_path: Path) -> AsyncIterator[Served]:
    # 5 MiB parts: a 6 MiB append is one part in S3 and a 1 MiB tail in the row.
    local = settings.with_overrides(part_size=5 * MiB, s3_max_attempts=2)
    if request.param == "moto":
        s3 = request.getfixturevalue("s3")
        yield Served(await aiohttp_client(create_app(local)), s3, local.s3_bucket)
        return
    with RcloneS3Server(tmp_path / "s3", "AKIDLOCAL", "secret-local") as rclone:
        s3 = boto3.client(
            "s3", endpoint_url=rclone.endpoint_url, region_name="us-east-1",
            aws_access_key_id="AKIDLOCAL", aws_secret_access_key="secret-local",
            config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=local.s3_bucket)
        gw = await aiohttp_client(create_app(local.with_overrides(
            s3_endpoint_url=rclone.endpoint_url, s3_access_key_id="AKIDLOCAL",
            s3_secret_access_key="secret-local")))
        yield Served(gw, s3, local.s3_bucket)


def _hdr(world: World, **extra: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": world.tokens["developer"], **extra}


async def _started_then_lost(served: Served, world: World, length: int) -> str:
    """A tus session holding one part in S3 and a tail in its row, whose multipart upload is
    then aborted in S3 directly."""
    resp = await served.client.post(GENERIC.format(pid=world.project_id) + "/uploads",
                                    headers=_hdr(world, **TUS, **{"Upload-Length": str(length)}))
    assert resp.status == 201
    url = resp.headers["Location"]
    resp = await served.client.patch(url, data=os.urandom(6 * MiB), headers=_hdr(
        world, **TUS, **{"Upload-Offset": "0",
                         "Content-Type": "application/offset+octet-stream"}))
    assert resp.status == 204, await resp.text()
    (upload,) = served.s3.list_multipart_uploads(Bucket=served.bucket)["Uploads"]
    served.s3.abort_multipart_upload(Bucket=served.bucket, Key=upload["Key"],
                                     UploadId=upload["UploadId"])
    return url


async def test_an_append_after_s3_lost_the_upload_is_a_404_and_leaves_nothing(
        served: Served, world: World) -> None:
    url = await _started_then_lost(served, world, 20 * MiB)
    resp = await served.client.patch(url, data=os.urandom(6 * MiB), headers=_hdr(
        world, **TUS, **{"Upload-Offset": str(6 * MiB),
                         "Content-Type": "application/offset+octet-stream"}))
    assert resp.status == 404
    assert await resp.json() == NOT_FOUND
    assert await leftovers(world.conn, served.s3, served.bucket) == NOTHING
    resp = await served.client.head(url, headers=_hdr(world, **TUS))
    assert resp.status == 404


async def test_the_completing_append_after_s3_lost_the_upload_is_a_404_and_leaves_nothing(
        served: Served, world: World) -> None:
    url = await _started_then_lost(served, world, 7 * MiB)
    # IETF: the last MiB, which with the tail in the row would complete the object.
    resp = await served.client.patch(url, data=os.urandom(MiB), headers=_hdr(
        world, **{"Upload-Offset": str(6 * MiB), "Upload-Complete": "?1",
                  "Content-Type": "application/partial-upload"}))
    assert resp.status == 404
    assert await resp.json() == NOT_FOUND
    assert await leftovers(world.conn, served.s3, served.bucket) == NOTHING


async def test_head_after_s3_lost_the_upload_is_a_404_and_leaves_nothing(
        served: Served, world: World) -> None:
    url = await _started_then_lost(served, world, 20 * MiB)
    resp = await served.client.head(url, headers=_hdr(world, **TUS))
    assert resp.status == 404
    assert resp.headers["Content-Type"] == "application/json"
    assert await leftovers(world.conn, served.s3, served.bucket) == NOTHING


async def test_head_of_a_session_s3_still_has_gives_its_offset(
        served: Served, world: World) -> None:
    resp = await served.client.post(GENERIC.format(pid=world.project_id) + "/uploads",
                                    headers=_hdr(world, **TUS, **{"Upload-Length": str(20 * MiB)}))
    url = resp.headers["Location"]
    resp = await served.client.patch(url, data=os.urandom(6 * MiB), headers=_hdr(
        world, **TUS, **{"Upload-Offset": "0",
                         "Content-Type": "application/offset+octet-stream"}))
    resp = await served.client.head(url, headers=_hdr(world, **TUS))
    assert resp.status == 200
    assert resp.headers["Upload-Offset"] == str(6 * MiB)
