"""Real parts for every test: PostgreSQL and an S3 server (moto) started once per run.

``TEST_DATABASE_URL`` / ``TEST_S3_ENDPOINT_URL`` name servers to use instead. Each test gets an
empty database (tables truncated), a bucket of its own, and helpers to create users, projects
and tokens through the gateway's own services.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import boto3
import pytest
from botocore.config import Config as BotoConfig

from gateway import auth
from gateway.app import create_app
from gateway.config import Settings
from gateway.db.migrate import migrate
from gateway.devtools.postgres import PostgresCluster
from gateway.devtools.processes import free_port, wait_for_port
from gateway.devtools.s3servers import MotoServer
from gateway.identity import seed, tokens
from gateway.models import User

# The web UI's shared fixtures (its HTTP and security test modules both use them).
pytest_plugins = ["tests.ui.helpers"]

ROOT = Path(__file__).resolve().parent.parent

# botocore's credential chain reads these; moto accepts anything.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.pop("AWS_PROFILE", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--large", action="store_true", help="run multi-GiB tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--large"):
        return
    skip = pytest.mark.skip(reason="multi-GiB case: run with --large")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)


# --- servers, once per run ------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster | None]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    cluster = PostgresCluster(tmp_path_factory.mktemp("pg") / "data", fast=True)
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def database_url(postgres: PostgresCluster | None) -> str:
    if postgres is None:
        url = os.environ["TEST_DATABASE_URL"]
    else:
        url = postgres.create_database("packgate_test")
    asyncio.run(migrate(url))
    return url


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer | None]:
    if os.environ.get("TEST_S3_ENDPOINT_URL"):
        yield None
        return
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint(moto: MotoServer | None) -> str:
    return os.environ.get("TEST_S3_ENDPOINT_URL") or moto.endpoint_url  # type: ignore[union-attr]


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


# --- per test ---------------------------------------------------------------------------------


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    yield name


@pytest.fixture
def s3(s3_endpoint: str):
    return s3_client(s3_endpoint)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to an emptied database, for arranging and checking rows."""
    conn = await asyncpg.connect(database_url)
    await empty_database(conn)
    yield conn
    await conn.close()


async def empty_database(conn: asyncpg.Connection) -> None:
    # The migrations' record stays: the schema is the one migrated at the start of the run.
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename <> 'schema_migrations'"
    )
    await conn.execute(
        "TRUNCATE " + ", ".join(t["tablename"] for t in tables) + " RESTART IDENTITY CASCADE"
    )


@pytest.fixture
def settings(database_url: str, s3_endpoint: str, bucket: str) -> Settings:
    return Settings(
        database_url=database_url,
        s3_bucket=bucket,
        s3_endpoint_url=s3_endpoint,
        db_pool_max=40,
        token_cache_seconds=0,
        body_read_timeout=10,
        instance_id="test",
    )


@pytest.fixture
async def client(aiohttp_client, settings: Settings, db: asyncpg.Connection):
    """The gateway in this process, spoken to over HTTP on a loopback port."""
    return await aiohttp_client(create_app(settings))


# --- people and projects ----------------------------------------------------------------------


@dataclass
class World:
    """A small instance: an administrator, a group ``acme`` with project ``acme/tools``, and
    users of each role in that project."""

    conn: asyncpg.Connection
    admin_token: str
    project_id: int
    project_path: str
    tokens: dict[str, str]

    async def user(self, username: str, *, admin: bool = False, **fields: object) -> User:
        return await seed.add_user(self.conn, username, admin=admin, **fields)

    async def token(self, user_id: int, scopes: list[str] | None = None, **kw: object) -> str:
        issued = await tokens.issue_personal_access_token(
            self.conn, user_id, "test", scopes or ["api"], **kw  # type: ignore[arg-type]
        )
        return issued.token

    async def member(self, user_id: int, level: int, project_id: int | None = None) -> None:
        await self.conn.execute(
            "INSERT INTO project_members (project_id, user_id, access_level) VALUES ($1, $2, $3)"
            " ON CONFLICT (project_id, user_id) DO UPDATE SET access_level = EXCLUDED.access_level",
            project_id or self.project_id, user_id, level,
        )

    async def project(self, group: str, name: str, visibility: str = "private") -> int:
        admin = await seed.ensure_admin(self.conn)
        row = await seed.ensure_project(
            self.conn, group, name, owner_id=admin.id, visibility=visibility
        )
        return row.id

    async def job_token(self, user_id: int, project_id: int | None = None) -> str:
        issued = await tokens.issue_job_token(
            self.conn, project_id or self.project_id, user_id, 3600
        )
        return issued.token


ROLES = {"guest": auth.GUEST, "reporter": auth.REPORTER, "developer": auth.DEVELOPER,
         "maintainer": auth.MAINTAINER, "owner": auth.OWNER}


@pytest.fixture
async def world(db: asyncpg.Connection) -> World:
    return await build_world(db)


async def build_world(db: asyncpg.Connection) -> World:
    """The World in an emptied database (also for tests that run a PostgreSQL of their own)."""
    admin_token = await seed.bootstrap(db)
    w = World(db, admin_token, 0, "acme/tools", {})
    w.project_id = await w.project("acme", "tools")
    for role, level in ROLES.items():
        user = await w.user(role)
        await w.member(user.id, level)
        w.tokens[role] = await w.token(user.id)
    outsider = await w.user("outsider")
    w.tokens["outsider"] = await w.token(outsider.id)
    return w


# --- the gateway as a separate process --------------------------------------------------------


@dataclass
class GatewayProcess:
    proc: subprocess.Popen
    url: str
    env: dict[str, str]
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def gateway_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATABASE_URL=settings.database_url,
        GATEWAY_S3_BUCKET=settings.s3_bucket,
        GATEWAY_S3_ENDPOINT_URL=settings.s3_endpoint_url or "",
        GATEWAY_PORT=str(port),
        GATEWAY_TOKEN_CACHE_SECONDS="0",
    )
    env.update(extra)  # the test's own settings win
    return env


def start_gateway(settings: Settings, tmp_path: Path, *, argv: list[str] | None = None,
                  **extra: str) -> GatewayProcess:
    """``gateway serve`` (or ``argv``, a Python command line) with ``GATEWAY_*`` from
    ``settings`` and ``extra``, on a free port; waits until it accepts connections."""
    port = free_port()
    env = gateway_env(settings, port, **extra)
    log_path = tmp_path / f"gateway-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *(argv or ["-m", "gateway", "serve"])], env=env, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT,
        )
    gw = GatewayProcess(proc, f"http://127.0.0.1:{port}", env, log_path)
    try:
        wait_for_port("127.0.0.1", port, 30)
    except Exception:
        gw.stop()
        raise RuntimeError(f"gateway did not start:\n{gw.log()}") from None
    return gw


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path, world: World) -> Iterator[GatewayProcess]:
    """``gateway serve`` as its own process, configured by environment variables."""
    gw = start_gateway(settings, tmp_path)
    yield gw
    gw.stop()
