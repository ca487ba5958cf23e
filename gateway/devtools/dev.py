"""`gateway dev`: PostgreSQL, a local S3 server and the gateway, all kept in one data folder.

A second start on the same folder finds everything stored before; a start while another one
holds the folder, or with the port taken, is refused before anything is started or printed.
Ctrl-C stops all three: the gateway first (it finishes what is in flight), then the S3 server,
then PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from gateway.config import Settings
from gateway.devtools.datadir import DataDir
from gateway.devtools.postgres import PostgresCluster
from gateway.devtools.processes import LocalServiceError, Service, port_is_free
from gateway.devtools.s3servers import RcloneS3Server
from gateway.devtools.seed import DEMO_GROUP, DEMO_PROJECT, Seeded, seed

DATABASE = "packgate"
BUCKET = "packages"
SAMPLE = "hello.txt"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def check_port(host: str, port: int, *, option: str = "--port", make_var: str = "PORT") -> None:
    """Refuse a listening port that is taken, naming the way to choose another."""
    if not port_is_free(port, host):
        raise LocalServiceError(
            f"port {port} on {host} is already in use (by another gateway, or any other "
            f"server); choose another with {option} N (make: {make_var}=N)")


@contextlib.contextmanager
def started(service: Service) -> Iterator[Service]:
    """Start ``service`` and stop it on the way out, whatever happens in between; a service
    that failed to start is not stopped (it may be someone else's)."""
    service.start()
    try:
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def held(data_dir: DataDir, command: str) -> Iterator[DataDir]:
    data_dir.acquire(command)
    try:
        yield data_dir
    finally:
        data_dir.release()


def adopt_orphan(postgres: PostgresCluster) -> None:
    """A postmaster serving a folder we hold was left by a run that was killed (its parent
    held the folder): stop it, so this run starts its own."""
    if postgres.is_running():
        say(f"stopping the PostgreSQL left running by an earlier run in {postgres.data_dir}")
        postgres.stop()


def shown_path(path: Path) -> Path:
    cwd = Path.cwd()
    return path.relative_to(cwd) if path.is_relative_to(cwd) else path


def _banner(base: str, seeded: Seeded, sample: Path, token_file: Path, *, ui: bool = True
            ) -> str:
    browse = (f"Browse the packages in a web browser (sign in with the token above):\n"
              f"  {base}/-/ui/\n\n") if ui else ""
    url = f"{base}/api/v4/projects/{seeded.project_id}/packages/generic/demo/1.0.0/{sample.name}"
    kept = "new, saved" if seeded.token_is_new else "saved"
    return f"""
packgate is running at {base}  (project {DEMO_GROUP}/{DEMO_PROJECT} has id {seeded.project_id})

Token of the administrator 'root' (api scope; {kept} in {token_file}, the same at every start):
  {seeded.token}

Upload a file:
  curl --fail-with-body --header "PRIVATE-TOKEN: {seeded.token}" --upload-file {sample} "{url}"

Download it (the gateway redirects to the local S3 server):
  curl --fail-with-body --location --header "PRIVATE-TOKEN: {seeded.token}" --output {sample.name}.downloaded "{url}"

{browse}Press Ctrl-C to stop the gateway, the S3 server and PostgreSQL.
"""  # noqa: E501


def run_dev(settings: Settings, data_path: Path, *, port: int | None = None) -> int:
    data_dir = DataDir(data_path)
    settings = settings.with_overrides(port=port or settings.port)
    try:
        with held(data_dir, "gateway dev"):
            check_port(settings.host, settings.port)
            _run(settings, data_dir)
    except LocalServiceError as exc:
        say(f"gateway dev: {exc}")
        return 1
    return 0


def _run(settings: Settings, data_dir: DataDir) -> None:
    from gateway.server import serve

    root = data_dir.path
    (root / "s3" / BUCKET).mkdir(parents=True, exist_ok=True)  # rclone: a bucket is a folder
    access, secret = data_dir.s3_credentials()
    postgres = PostgresCluster(root / "postgres")
    s3 = RcloneS3Server(root / "s3", access, secret, log_path=root / "rclone.log")
    adopt_orphan(postgres)
    say("starting PostgreSQL and the S3 server ...")
    try:
        with started(postgres), started(s3):
            database_url = postgres.create_database(DATABASE)
            seeded = asyncio.run(seed(database_url, data_dir.saved_token()))
            data_dir.save_token(seeded.token)
            sample = root / SAMPLE
            if not sample.exists():
                sample.write_text("Hello from packgate!\n")
            settings = settings.with_overrides(
                database_url=database_url,
                s3_endpoint_url=s3.endpoint_url,
                s3_public_endpoint_url=settings.s3_public_endpoint_url or s3.endpoint_url,
                s3_bucket=BUCKET,
                s3_access_key_id=access,
                s3_secret_access_key=secret,
            )
            base = f"http://{settings.host}:{settings.port}"
            print(_banner(base, seeded, shown_path(sample), shown_path(data_dir.token_path),
                          ui=settings.ui), flush=True)
            try:
                serve(settings)
            except OSError as exc:  # the port was taken between the check and the bind
                raise LocalServiceError(f"cannot serve on {base}: {exc.strerror}") from None
    finally:
        say("stopped.")
