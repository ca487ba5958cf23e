"""Claims about gateway.localservices, checked against real postgres, moto and rclone processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import boto3
import pytest
from botocore.config import Config

from gateway.localservices import (
    LocalServiceError,
    MotoServer,
    PostgresCluster,
    RcloneS3Server,
    find_pg_binary,
)

DEADLINE = 30.0  # seconds, for every query and request


def query(url: str, sql: str) -> object:
    """First value of ``sql``'s result; several statements when it returns nothing."""

    async def run() -> object:
        conn = await asyncpg.connect(url, timeout=DEADLINE)
        try:
            if ";" in sql:
                return await conn.execute(sql, timeout=DEADLINE)
            return await conn.fetchval(sql, timeout=DEADLINE)
        finally:
            await conn.close(timeout=DEADLINE)

    return asyncio.run(run())


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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PostgresCluster]:
    pg = PostgresCluster(tmp_path / "pgdata", fast=True, timeout=DEADLINE)
    yield pg
    pg.stop()


def test_postgres_starts_and_answers_select_1(cluster: PostgresCluster) -> None:
    cluster.start()
    assert cluster.is_running()
    assert query(cluster.url, "SELECT 1") == 1


def test_postgres_keeps_data_across_restart(cluster: PostgresCluster) -> None:
    cluster.start()
    query(cluster.url, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    cluster.stop()
    assert not cluster.is_running()
    cluster.start()
    assert query(cluster.url, "SELECT x FROM kept") == 42


def test_postgres_restarts_after_kill(cluster: PostgresCluster) -> None:
    cluster.start()
    query(cluster.url, "SELECT 1")
    cluster.kill()
    assert not cluster.is_running()
    assert (cluster.data_dir / "postmaster.pid").exists()  # stale lock file left by the crash
    cluster.start()
    assert query(cluster.url, "SELECT 1") == 1


def test_postgres_reuses_remembered_port(cluster: PostgresCluster) -> None:
    cluster.start()
    port = cluster.port
    cluster.stop()
    again = PostgresCluster(cluster.data_dir, fast=True, timeout=DEADLINE)
    with again:
        assert again.port == port


def test_postgres_stop_is_idempotent(cluster: PostgresCluster) -> None:
    cluster.start()
    cluster.stop()
    cluster.stop()
    assert not cluster.is_running()


def test_postgres_refuses_second_postmaster_on_same_dir(cluster: PostgresCluster) -> None:
    cluster.start()
    with pytest.raises(LocalServiceError, match="already serves"):
        PostgresCluster(cluster.data_dir, fast=True, timeout=DEADLINE).start()


def test_missing_pg_binary_names_package() -> None:
    with pytest.raises(LocalServiceError, match="apt-get install postgresql"):
        find_pg_binary("no-such-postgres-program")


def test_postgres_create_database(cluster: PostgresCluster) -> None:
    cluster.start()
    url = cluster.create_database("app-db")
    assert cluster.create_database("app-db") == url  # already there: no error
    assert query(url, "SELECT current_database()") == "app-db"


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
        assert s3.get_object(Bucket="bkt", Key="direct.txt")["Body"].read() == b"from disk"


def test_rclone_refuses_too_short_access_key(tmp_path: Path) -> None:
    with pytest.raises(LocalServiceError, match="3\\+ characters"):
        RcloneS3Server(tmp_path / "s3", "ab", "secret-local")
