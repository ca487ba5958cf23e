"""`gateway dev`: PostgreSQL, a local S3 server and the gateway, all kept in one data folder.

A second start on the same folder finds everything stored before. Ctrl-C stops all three: the
gateway first (it finishes what is in flight), then the S3 server, then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path

import asyncpg

from gateway.config import Settings
from gateway.db.migrate import migrate
from gateway.identity import seed
from gateway.localservices import LocalServiceError, PostgresCluster, RcloneS3Server
from gateway.server import serve

DATABASE = "packgate"
BUCKET = "packages"
DEMO_GROUP, DEMO_PROJECT = "demo", "project"


def _credentials(data_dir: Path) -> tuple[str, str]:
    """The local S3 server's key pair, made once per data folder."""
    path = data_dir / "s3-credentials.json"
    if path.exists():
        creds = json.loads(path.read_text())
        return creds["access_key"], creds["secret_key"]
    access, secret = "packgate" + secrets.token_hex(4), secrets.token_urlsafe(24)
    path.write_text(json.dumps({"access_key": access, "secret_key": secret}))
    path.chmod(0o600)
    return access, secret


async def _prepare(database_url: str) -> tuple[str, int]:
    """Schema, administrator, demo project; returns a new token and the project's id."""
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        token = await seed.bootstrap(conn, token_name="gateway dev")
        admin = await seed.ensure_admin(conn)
        project = await seed.ensure_project(
            conn, DEMO_GROUP, DEMO_PROJECT, owner_id=admin.id
        )
    finally:
        await conn.close()
    return token, project.id


def _banner(base: str, token: str, project_id: int, sample: Path) -> str:
    url = f"{base}/api/v4/projects/{project_id}/packages/generic/demo/1.0.0/{sample.name}"
    return f"""
packgate is running at {base}  (project {DEMO_GROUP}/{DEMO_PROJECT} has id {project_id})

Token of the administrator 'root' (api scope; shown once, a new one at every start):
  {token}

Upload a file:
  curl --fail-with-body --header "PRIVATE-TOKEN: {token}" --upload-file {sample} "{url}"

Download it (the gateway redirects to the local S3 server):
  curl --fail-with-body --location --header "PRIVATE-TOKEN: {token}" --output {sample.name}.downloaded "{url}"

Press Ctrl-C to stop the gateway, the S3 server and PostgreSQL.
"""  # noqa: E501


def run_dev(settings: Settings, data_dir: Path, *, port: int | None = None) -> int:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "s3" / BUCKET).mkdir(parents=True, exist_ok=True)  # rclone: a bucket is a folder
    access, secret = _credentials(data_dir)
    postgres = PostgresCluster(data_dir / "postgres")
    s3 = RcloneS3Server(data_dir / "s3", access, secret, log_path=data_dir / "rclone.log")
    try:
        print("starting PostgreSQL and the S3 server ...", file=sys.stderr)
        postgres.start()
        s3.start()
        database_url = postgres.create_database(DATABASE)
        sample = data_dir / "hello.txt"
        if not sample.exists():
            sample.write_text("Hello from packgate!\n")
        token, project_id = asyncio.run(_prepare(database_url))
        settings = settings.with_overrides(
            database_url=database_url,
            s3_endpoint_url=s3.endpoint_url,
            s3_public_endpoint_url=settings.s3_public_endpoint_url or s3.endpoint_url,
            s3_bucket=BUCKET,
            s3_access_key_id=access,
            s3_secret_access_key=secret,
            port=port or settings.port,
        )
        base = f"http://{settings.host}:{settings.port}"
        print(_banner(base, token, project_id, sample.relative_to(Path.cwd())
                      if sample.is_relative_to(Path.cwd()) else sample), flush=True)
        serve(settings)
    except LocalServiceError as exc:
        print(f"gateway dev: {exc}", file=sys.stderr)
        return 1
    finally:
        s3.stop()
        postgres.stop()
        print("stopped.", file=sys.stderr)
    return 0

