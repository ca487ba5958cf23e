"""Claims about the local S3 servers, checked against real moto and rclone processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import boto3
import psutil
import pytest
from botocore.config import Config

from gateway.devtools.processes import LocalServiceError
from gateway.devtools.s3servers import MotoServer, RcloneS3Server

DEADLINE = 30.0  # seconds, for every query and request


def s3_client(endpoint_url: str, access_key: str = "test", secret_key: str = "test"):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=DEADLINE,
            read_timeout=DEADLINE,
            retries={"max_attempts": 1},
        ),
    )


def test_moto_bucket_put_get() -> None:
    with MotoServer(timeout=DEADLINE) as server:
        s3 = s3_client(server.endpoint_url)
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="a/b.txt", Body=b"hello")
        assert s3.get_object(Bucket="bkt", Key="a/b.txt")["Body"].read() == b"hello"


def test_moto_stop_twice_and_after_kill() -> None:
    server = MotoServer(timeout=DEADLINE)
    server.start()
    server.kill()
    server.stop()
    server.stop()
    assert not server.is_running()


def test_rclone_object_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "s3"
    with RcloneS3Server(data, "AKIDLOCAL", "secret-local", timeout=DEADLINE) as server:
        s3 = s3_client(server.endpoint_url, "AKIDLOCAL", "secret-local")
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="a/b.txt", Body=b"hello rclone")
        assert s3.get_object(Bucket="bkt", Key="a/b.txt")["Body"].read() == b"hello rclone"
    assert (data / "bkt" / "a" / "b.txt").read_bytes() == b"hello rclone"


def test_rclone_rejects_wrong_secret(tmp_path: Path) -> None:
    with RcloneS3Server(tmp_path / "s3", "AKIDLOCAL", "secret-local", timeout=DEADLINE) as server:
        s3 = s3_client(server.endpoint_url, "AKIDLOCAL", "wrong")
        with pytest.raises(s3.exceptions.ClientError):
            s3.list_buckets()


def test_rclone_resumes_after_pause(tmp_path: Path) -> None:
    with RcloneS3Server(tmp_path / "s3", "AKIDLOCAL", "secret-local", timeout=DEADLINE) as server:
        server.pause()
        server.resume()
        s3 = s3_client(server.endpoint_url, "AKIDLOCAL", "secret-local")
        assert s3.list_buckets()["Buckets"] == []


def test_rclone_restarts_on_same_port_after_kill(tmp_path: Path) -> None:
    with RcloneS3Server(tmp_path / "s3", "AKIDLOCAL", "secret-local", timeout=DEADLINE) as server:
        s3 = s3_client(server.endpoint_url, "AKIDLOCAL", "secret-local")
        s3.create_bucket(Bucket="bkt")
        port = server.port
        server.kill()
        server.start()
        assert server.port == port
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["bkt"]


def test_rclone_stops_while_paused(tmp_path: Path) -> None:
    server = RcloneS3Server(tmp_path / "s3", "AKIDLOCAL", "secret-local", timeout=DEADLINE)
    server.start()
    server.pause()
    server.stop()
    assert not server.is_running()


def test_rclone_serves_file_written_into_folder(tmp_path: Path) -> None:
    data = tmp_path / "s3"
    with RcloneS3Server(data, "AKIDLOCAL", "secret-local", timeout=DEADLINE) as server:
        s3 = s3_client(server.endpoint_url, "AKIDLOCAL", "secret-local")
        s3.create_bucket(Bucket="bkt")
        assert "Contents" not in s3.list_objects_v2(Bucket="bkt")
        (data / "bkt" / "direct.txt").write_bytes(b"from disk")
        # rclone trusts its listing for DIR_CACHE_TIME (1s); then the file is there.
        deadline = time.monotonic() + 10
        while True:
            try:
                body = s3.get_object(Bucket="bkt", Key="direct.txt")["Body"].read()
                break
            except s3.exceptions.NoSuchKey:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert body == b"from disk"


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def test_rclone_idles_after_put_delete_and_abort(tmp_path: Path) -> None:
    """rclone 1.75 with a zero directory cache time kept a core busy for good after these."""
    with RcloneS3Server(tmp_path / "s3", "AKIDLOCAL", "secret-local", timeout=DEADLINE) as server:
        s3 = s3_client(server.endpoint_url, "AKIDLOCAL", "secret-local")
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="a/big", Body=os.urandom(64 * 2**20))
        s3.delete_object(Bucket="bkt", Key="a/big")
        upload = s3.create_multipart_upload(Bucket="bkt", Key="a/part")["UploadId"]
        s3.upload_part(Bucket="bkt", Key="a/part", UploadId=upload, PartNumber=1,
                       Body=b"x" * 2**20)
        s3.abort_multipart_upload(Bucket="bkt", Key="a/part", UploadId=upload)
        assert server.pid is not None
        before = _cpu_seconds(server.pid)
        time.sleep(3)
        # A spinning server burns ~3 CPU-seconds here; an idle one next to nothing.
        assert _cpu_seconds(server.pid) - before < 0.5


def test_rclone_refuses_too_short_access_key(tmp_path: Path) -> None:
    with pytest.raises(LocalServiceError, match="3\\+ characters"):
        RcloneS3Server(tmp_path / "s3", "ab", "secret-local")
