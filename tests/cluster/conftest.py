"""One local cluster for the whole run: PostgreSQL, rclone's S3, PgBouncer in transaction
pooling, 3 `gateway serve` processes and nginx with deploy/nginx.conf, as `gateway cluster`
runs them (the same class). Tests share it, so each uses package names of its own and checks
consistency against what was there when it began."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import boto3
import pytest
from botocore.config import Config as BotoConfig

from gateway.config import MiB, Settings
from gateway.devtools.cluster import Cluster
from gateway.devtools.processes import free_port

# Small, so the sweeper settles a killed gateway's uploads within seconds (heartbeats every
# 1.25 s); 5 MiB parts make an 8 MiB body a two-part multipart upload.
STALE_SECONDS = 5
# /metrics is reachable through nginx here, so it asks for a token, as the README advises.
METRICS_TOKEN = "cluster-metrics-" + uuid.uuid4().hex
SETTINGS = Settings(stale_upload_seconds=STALE_SECONDS, part_size=5 * MiB, shutdown_timeout=5,
                    token_cache_seconds=1, metrics_token=METRICS_TOKEN)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("cluster") / "data", free_port(), SETTINGS,
                      fast=True)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def s3(cluster: Cluster):
    access, secret = cluster.data_dir.s3_credentials()
    assert cluster.s3 is not None
    return boto3.client(
        "s3", endpoint_url=cluster.s3.endpoint_url, region_name="us-east-1",
        aws_access_key_id=access, aws_secret_access_key=secret,
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture
async def db(cluster: Cluster) -> AsyncIterator[asyncpg.Connection]:
    """Straight to PostgreSQL (not through PgBouncer), for checking rows."""
    conn = await asyncpg.connect(cluster.database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=240, sock_read=120)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        yield session


@pytest.fixture
def token(cluster: Cluster) -> str:
    assert cluster.seeded is not None
    return cluster.seeded.token


@dataclass
class Api:
    """URLs and headers for the demo project, through nginx."""

    base: str
    project_id: int
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.token}

    def file(self, name: str, version: str, file_name: str,
             project: int | str | None = None) -> str:
        pid = project if project is not None else self.project_id
        return f"{self.base}/api/v4/projects/{pid}/packages/generic/{name}/{version}/{file_name}"

    def url(self, path: str) -> str:
        return f"{self.base}/api/v4{path}"


@pytest.fixture
def api(cluster: Cluster, token: str) -> Api:
    assert cluster.seeded is not None
    return Api(cluster.url, cluster.seeded.project_id, token)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def committed_sha256s(conn: asyncpg.Connection) -> list[str]:
    """Every file's sha256 now: what consistency checks add a test's own files to."""
    return [r["file_sha256"] for r in await conn.fetch("SELECT file_sha256 FROM package_files")]


@dataclass(frozen=True)
class NginxLine:
    request: str
    status: int
    upstreams: tuple[str, ...]  # every gateway tried, in order

    @property
    def answered_by(self) -> str:
        return self.upstreams[-1] if self.upstreams else ""


_LINE = re.compile(r'"(?P<request>[^"]*)" (?P<status>\d{3}) \d+ upstream=(?P<up>.*?) '
                   r'upstream_status=')


def nginx_lines(cluster: Cluster, since: int = 0) -> list[NginxLine]:
    """nginx's access log from byte ``since`` on."""
    assert cluster.nginx is not None
    with cluster.nginx.access_log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    lines = []
    for m in _LINE.finditer(text):
        ups = tuple(u.strip() for u in m["up"].split(",") if u.strip() not in ("", "-"))
        lines.append(NginxLine(m["request"], int(m["status"]), ups))
    return lines


def nginx_log_size(cluster: Cluster) -> int:
    assert cluster.nginx is not None
    return cluster.nginx.access_log.stat().st_size


async def wait_for_nginx_lines(cluster: Cluster, since: int, count: int,
                               timeout: float = 30) -> list[NginxLine]:
    """nginx writes a request's line when it ends; a client may see the answer first."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(lines := nginx_lines(cluster, since)) < count:
        assert asyncio.get_running_loop().time() < deadline, f"only {len(lines)} nginx lines"
        await asyncio.sleep(0.1)
    return lines
