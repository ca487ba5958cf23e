"""The fault proxy in front of S3: forwards everything, answers S3's 500 while told to fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from gateway.devtools.s3proxy import FaultyS3Proxy


@pytest.fixture
def proxy(s3_endpoint: str, tmp_path: Path) -> Iterator[FaultyS3Proxy]:
    running = FaultyS3Proxy(s3_endpoint, tmp_path / "proxy.log", fail_ratio=1.0)
    running.start()
    yield running
    running.stop()


def client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"},
                                          s3={"addressing_style": "path"}))


def test_proxy_forwards_then_fails_then_heals(proxy: FaultyS3Proxy, bucket: str) -> None:
    s3 = client(proxy.endpoint_url)
    s3.put_object(Bucket=bucket, Key="a", Body=b"first")
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"first"
    assert s3.head_object(Bucket=bucket, Key="a")["ContentLength"] == 5

    proxy.fail()
    with pytest.raises(ClientError) as failed:
        s3.put_object(Bucket=bucket, Key="b", Body=b"second")
    assert failed.value.response["Error"]["Code"] == "InternalError"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

    proxy.heal()
    s3.put_object(Bucket=bucket, Key="b", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"second"
