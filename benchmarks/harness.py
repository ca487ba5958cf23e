"""The parts a benchmark run is made of: its own PostgreSQL and S3 servers, gateway processes,
and the measurements taken on them (wall time, CPU time and peak RSS from /proc)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from gateway.db.migrate import migrate
from gateway.devtools.postgres import PostgresCluster
from gateway.devtools.processes import free_port, wait_for_port
from gateway.devtools.s3servers import MotoServer, RcloneS3Server, S3Server
from gateway.identity import seed

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
MiB = 2**20
ACCESS_KEY = "benchkey"
SECRET_KEY = "benchsecret"
BUCKET = "bench"
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``gateway serve --workers`` forks its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def _tree_sum(pid: int, measure: Callable[[int], float]) -> float:
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, RuntimeError):
            total += measure(p)
    return total


def make_file(path: Path, size: int) -> Path:
    """``size`` random bytes (incompressible, so nothing on the way can cheat)."""
    if path.exists() and path.stat().st_size == size:
        return path
    block = os.urandom(8 * MiB)
    with path.open("wb") as f:
        left = size
        while left > 0:
            # A fresh prefix per block keeps every part distinct.
            chunk = os.urandom(16) + block[16 : min(left, len(block))]
            f.write(chunk[:left])
            left -= len(chunk)
    return path


def fresh_head(path: Path) -> None:
    """New first bytes for the file: the gateway stores identical bytes once (deduplication),
    so a repeated upload of the same file would measure a different path, and the one
    database of a run would point at an object of an earlier case's S3 server."""
    with path.open("r+b") as f:
        f.write(os.urandom(16))


def digest_floor(path: Path, limit: int = 512 * MiB) -> float:
    """CPU-seconds per MB of md5 + sha1 + sha256 over the first ``limit`` bytes of ``path``,
    one after another on one thread: the least any gateway must spend on an upload."""
    blocks = []
    with path.open("rb") as f:
        while sum(map(len, blocks)) < limit and (b := f.read(8 * MiB)):
            blocks.append(b)
    n = sum(map(len, blocks))
    start = time.thread_time()
    for algo in (hashlib.md5, hashlib.sha1, hashlib.sha256):
        h = algo()
        for b in blocks:
            h.update(b)
        h.hexdigest()
    return (time.thread_time() - start) / (n / MB)


# --- services ---------------------------------------------------------------------------------


@dataclass
class Backend:
    """An S3 server the benchmark started, with a bucket."""

    name: str
    server: S3Server
    data_dir: Path | None = None

    @property
    def endpoint(self) -> str:
        return self.server.endpoint_url

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def ensure(self) -> None:
        """Have the server running (a case may follow one that rested it)."""
        self.server.start()

    def fresh(self) -> None:
        """Start a measurement on a server in its first state: rclone is restarted (the folder,
        and so the bucket, stays; what it holds in memory, such as multipart state, goes)."""
        if self.name == "rclone":
            self.server.stop()
            self.server.start()

    def rest(self) -> None:
        """Between cases: stop rclone, so nothing it still does slows the next case down
        (``fresh`` starts it again)."""
        if self.name == "rclone":
            self.server.stop()

    def empty_bucket(self) -> None:
        """Delete every object and open upload, so the servers do not fill up between rounds."""
        if self.name == "rclone":
            # rclone keeps objects as files: emptying the folder while it is stopped is quicker
            # than deleting them one by one.
            self.server.stop()
            bucket = self.data_dir / BUCKET
            shutil.rmtree(bucket, ignore_errors=True)
            bucket.mkdir(parents=True)
            self.server.start()
            return
        s3 = self.client()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
        for up in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=BUCKET, Key=up["Key"], UploadId=up["UploadId"])


def start_backend(name: str, work: Path, *, rclone_buffer_limit: int) -> Backend:
    if name == "moto":
        server: S3Server = MotoServer(log_path=work / "moto.log")
    elif name == "rclone":
        server = RcloneS3Server(
            work / "rclone-data", ACCESS_KEY, SECRET_KEY,
            extra_args=[
                "--ignore-checksum", "--no-checksum",
                "--multipart-streaming-buffer-limit", f"{rclone_buffer_limit // MiB}Mi",
            ],
            log_path=work / "rclone.log",
        )
    else:
        raise ValueError(f"unknown S3 server {name!r} (moto, rclone)")
    server.start()
    backend = Backend(name, server, work / "rclone-data" if name == "rclone" else None)
    try:
        backend.client().create_bucket(Bucket=BUCKET)
    except ClientError as exc:
        # A --workdir of an earlier run still holds the bucket.
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",
                                                             "BucketAlreadyExists"):
            raise
    return backend


@dataclass
class Database:
    cluster: PostgresCluster
    url: str
    token: str
    project_id: int


def start_database(work: Path) -> Database:
    cluster = PostgresCluster(work / "pg", fast=True)
    cluster.start()
    url = cluster.create_database("packgate_bench")

    async def prepare() -> tuple[str, int]:
        await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            token = await seed.bootstrap(conn, "bench")
            admin = await seed.ensure_admin(conn)
            project = await seed.ensure_project(
                conn, "bench", "files", owner_id=admin.id, visibility="private"
            )
            return token, project.id
        finally:
            await conn.close()

    token, project_id = asyncio.run(prepare())
    return Database(cluster, url, token, project_id)


# --- the gateway as a process -----------------------------------------------------------------


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    _log_offset: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        """CPU time of the gateway's processes (its workers too, while they live)."""
        return _tree_sum(self.pid, cpu_seconds)

    def peak_rss(self) -> int:
        """The peak RSS of the gateway; with workers, the sum of each process's peak (an
        upper bound of what they held at once)."""
        return int(_tree_sum(self.pid, peak_rss))

    def stored(self) -> list[dict]:
        """The ``upload stored`` log lines written since the last call."""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        self._log_offset += len(data)
        out = []
        for line in data.splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if rec.get("msg") == "upload stored":
                    out.append(rec)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_gateway(db: Database, work: Path, label: str, *, backend: Backend | None,
                  extra_env: dict[str, str] | None = None, database_url: str | None = None,
                  s3_endpoint: str | None = None) -> GatewayProcess:
    """``gateway serve`` against ``backend``, or the discarding store when it is None
    (``database_url`` and ``s3_endpoint``: another way to the same servers, a proxy)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))}
    env.update(
        GATEWAY_DATABASE_URL=database_url or db.url,
        GATEWAY_PORT=str(port),
        GATEWAY_LOG_LEVEL="INFO",
        GATEWAY_INSTANCE_ID=f"bench-{label}",
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        **(extra_env or {}),
    )
    if backend is None:
        cmd = [sys.executable, "-m", "benchmarks.nullserve"]
    else:
        env.update(GATEWAY_S3_BUCKET=BUCKET,
                   GATEWAY_S3_ENDPOINT_URL=s3_endpoint or backend.endpoint)
        cmd = [sys.executable, "-m", "gateway", "serve"]
    log_path = work / f"gateway-{label}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    gw = GatewayProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_for_port("127.0.0.1", port, 60, proc=proc, log_path=log_path)
    except BaseException:
        gw.stop()
        raise
    return gw


@contextlib.contextmanager
def scraping(gw: GatewayProcess | None, interval: float = 1.0) -> Iterator[None]:
    """Scrape ``gw``'s /metrics every ``interval`` seconds meanwhile (Prometheus does every 15
    s or so: this is the dearer case). None: nothing."""
    if gw is None:
        yield
        return
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            with (contextlib.suppress(OSError),
                  urllib.request.urlopen(f"{gw.url}/metrics", timeout=10) as resp):
                resp.read()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(15)


# --- uploads ----------------------------------------------------------------------------------


@dataclass
class Upload:
    seconds: float
    size: int
    parts_seconds: float | None = None
    complete_seconds: float | None = None
    cpu_seconds: float | None = None
    status: int = 201
    extra: dict = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.seconds


def file_url(gw: GatewayProcess, db: Database, name: str) -> str:
    return f"{gw.url}/api/v4/projects/{db.project_id}/packages/generic/bench/1.0/{name}"


def curl_upload_cmd(url: str, token: str, path: Path) -> list[str]:
    return ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--upload-file", str(path),
            "-H", f"PRIVATE-TOKEN: {token}", url]


def children_cpu() -> float:
    """CPU time of this process's finished children (the upload clients it ran)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def gateway_upload(gw: GatewayProcess, db: Database, path: Path, name: str) -> Upload:
    """``curl --upload-file`` through the gateway; CPU is the gateway process's own (curl's in
    ``extra["client_cpu"]``)."""
    fresh_head(path)
    gw.stored()
    cpu0, client0 = gw.cpu(), children_cpu()
    start = time.perf_counter()
    out = subprocess.run(curl_upload_cmd(file_url(gw, db, name), db.token, path),
                         capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    cpu = gw.cpu() - cpu0
    client = children_cpu() - client0
    status = int(out.stdout.strip() or 0)
    if status != 201:
        raise RuntimeError(f"gateway upload answered {status}: {out.stderr}")
    rec = (gw.stored() or [{}])[-1]
    return Upload(seconds, path.stat().st_size, rec.get("parts_s"), rec.get("complete_s"), cpu,
                  status, extra={"client_cpu": client})


def resumable_upload(gw: GatewayProcess, db: Database, path: Path, name: str,
                     chunk: int) -> Upload:
    """``gateway upload`` (the IETF protocol) in ``chunk``-sized requests; its process start
    counts against it (its CPU in ``extra["client_cpu"]``)."""
    fresh_head(path)
    cpu0, client0 = gw.cpu(), children_cpu()
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "upload", str(path), file_url(gw, db, name),
         "--chunk-size", str(chunk)],
        capture_output=True, text=True, timeout=3600,
        env={**os.environ, "PACKGATE_TOKEN": db.token})
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"resumable upload failed: {out.stderr}")
    return Upload(seconds, path.stat().st_size, cpu_seconds=gw.cpu() - cpu0,
                  extra={"client_cpu": children_cpu() - client0})


def direct_upload(backend: Backend, path: Path, key: str) -> Upload:
    """boto3's ``upload_file`` with its default TransferConfig, straight to the S3 server."""
    s3 = backend.client()
    complete_at: list[float] = []
    s3.meta.events.register(
        "before-call.s3.CompleteMultipartUpload",
        lambda **_: complete_at.append(time.perf_counter()),
    )
    start = time.perf_counter()
    s3.upload_file(str(path), BUCKET, key, Config=TransferConfig())
    end = time.perf_counter()
    parts = (complete_at[0] - start) if complete_at else end - start
    return Upload(end - start, path.stat().st_size, parts, end - start - parts)


def concurrent_uploads(gw: GatewayProcess, db: Database, path: Path, n: int,
                       label: str) -> tuple[float, list[int], list[str]]:
    """``n`` curl uploads started together; the wall time until the last one ends, the
    statuses, and what curl said about the failed ones."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            curl_upload_cmd(file_url(gw, db, f"{label}-{i}.bin"), db.token, path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(n)
    ]
    statuses, errors = [], []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        statuses.append(int(out.strip() or 0))
        if statuses[-1] != 201:
            errors.append(f"{statuses[-1]} {err.strip()}")
    return time.perf_counter() - start, statuses, errors


def concurrent_direct_uploads(backend: Backend, path: Path, n: int,
                              label: str) -> tuple[float, list[str]]:
    """``n`` direct uploads (boto3 ``upload_file``, a process each) started together once all
    are ready; the wall time until the last one ends, and the errors of those that failed."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.directput", backend.endpoint, BUCKET,
             f"{label}-{i}.bin", str(path)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]
    for p in procs:
        assert p.stdout is not None
        p.stdout.readline()  # "ready" (or nothing: it failed, as communicate will show)
    start = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        with contextlib.suppress(OSError):
            p.stdin.write("go\n")
            p.stdin.flush()
    for p in procs:
        assert p.stdout is not None
        p.stdout.readline()  # "done": the last one read marks the end (not the exits)
    wall = time.perf_counter() - start
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            errors.append(err.strip()[-300:])
    return wall, errors


# --- downloads --------------------------------------------------------------------------------


def curl_download(url: str, headers: dict[str, str] | None = None) -> tuple[float, int]:
    """``curl -o /dev/null`` of ``url`` (no redirect followed); seconds and bytes received."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    status, size = out.stdout.split()
    if status != "200":
        raise RuntimeError(f"download of {url.split('?')[0]} answered {status}: {out.stderr}")
    return seconds, int(size)


def presigned_get(backend: Backend, key: str) -> str:
    return backend.client().generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600)


@dataclass
class BareApp:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_bare_redirects(workers: int) -> BareApp:
    """The bare aiohttp app answering the gateway's 302 (benchmarks/bare302.py)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare302", str(port),
                             str(workers)], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = BareApp(proc, f"http://127.0.0.1:{port}/x")
    try:
        wait_for_port("127.0.0.1", port, 30, proc=proc)
    except BaseException:
        app.stop()
        raise
    return app


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # CPU-ms per answer of the server's processes and of PostgreSQL's, when measured.
    cpu_ms: float | None = None
    db_cpu_ms: float | None = None

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    return _tree_sum(pid, cpu_seconds)


def postgres_cpu(db: Database) -> float:
    """CPU seconds of the benchmark's PostgreSQL: the postmaster and its live backends."""
    pid = int((db.cluster.data_dir / "postmaster.pid").read_text().split()[0])
    return tree_cpu(pid)


def measured_load(url: str, token: str, server_pid: int, db: Database | None = None,
                  **load: Any) -> LoadResult:
    """:func:`redirect_load` with the CPU its server (and PostgreSQL) spent per answer."""
    cpu0, db0 = tree_cpu(server_pid), postgres_cpu(db) if db else 0.0
    res = redirect_load(url, token, **load)
    if res.requests:
        res.cpu_ms = (tree_cpu(server_pid) - cpu0) * 1000 / res.requests
        if db is not None:
            res.db_cpu_ms = (postgres_cpu(db) - db0) * 1000 / res.requests
    return res


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def redirect_load(url: str, token: str, *, clients: int, seconds: float,
                  rate: float | None = None, processes: int = 2,
                  expect: int = 302) -> LoadResult:
    """``clients`` concurrent clients (split over ``processes`` loader processes) ask for
    ``url`` for ``seconds``, as fast as answered or at ``rate`` requests a second in total;
    only ``expect`` answers (302: a redirect; 200: streamed by the discarding store) count
    as done."""
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load", url, "--header", f"PRIVATE-TOKEN: {token}",
             "--clients", str(c), "--seconds", str(seconds), "--expect", str(expect),
             *(["--rate", str(rate * c / clients)] if rate else [])],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        for c in per if c
    ]
    latencies: list[float] = []
    errors = 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 120)
        res = json.loads(out)
        latencies += res["latencies"]
        errors += res["errors"]
    latencies.sort()
    return LoadResult(len(latencies), errors, seconds, _quantile(latencies, 0.5) * 1000,
                      _quantile(latencies, 0.99) * 1000)


# --- small files ------------------------------------------------------------------------------


@dataclass
class SmallResult:
    uploads: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    first_error: str = ""

    @property
    def per_second(self) -> float:
        return self.uploads / self.seconds


def small_load(target: str, url: str, *, clients: int, seconds: float, size: int,
               prefix: str, **extra: str) -> SmallResult:
    """``clients`` concurrent clients upload ``size``-byte files to ``target`` (gateway,
    direct, registry) for ``seconds``, in a child process of their own."""
    cmd = [sys.executable, "-m", "benchmarks.smallfiles", target, url, "--clients",
           str(clients), "--seconds", str(seconds), "--size", str(size), "--prefix", prefix]
    for key, value in extra.items():
        cmd += [f"--{key}", value]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"small-file load ({target}) failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout)
    lat = sorted(res["latencies"])
    return SmallResult(res["uploads"], res["errors"], seconds, _quantile(lat, 0.5) * 1000,
                       _quantile(lat, 0.99) * 1000, res["first_error"])


def put_small(url: str, token: str, data: bytes) -> int:
    """One upload with urllib (one request at a time: nothing else is in the counts)."""
    req = urllib.request.Request(url, data=data, method="PUT",
                                 headers={"PRIVATE-TOKEN": token})
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()
        return resp.status
