"""`gateway cluster`: the production topology on loopback, with the real parts.

    clients ──► nginx (deploy/nginx.conf) ──► gateway x 3 ──► PgBouncer (transaction pooling)
                                                   │                 ──► PostgreSQL
                                                   └──► S3 (rclone serve s3, objects as files)

PostgreSQL and S3 are those of `gateway dev`, kept in a data folder of their own. The schema,
the administrator and the demo project are made directly on PostgreSQL; the gateways reach it
only through PgBouncer (``GATEWAY_DB_PGBOUNCER``), except for a LISTEN connection, which cannot
work through transaction pooling. A readiness watch keeps nginx's rotation to the gateways
whose ``/-/readiness`` answers (see :class:`Rotation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway import config
from gateway.devtools.datadir import DataDir
from gateway.devtools.dev import BUCKET, DATABASE, SAMPLE, check_port, say, shown_path
from gateway.devtools.instances import GatewayInstance
from gateway.devtools.nginx import Nginx, Upstream, find_nginx
from gateway.devtools.pgbouncer import PgBouncer, find_pgbouncer
from gateway.devtools.postgres import PostgresCluster, find_pg_binary
from gateway.devtools.processes import LocalServiceError, Service
from gateway.devtools.s3proxy import FaultyS3Proxy
from gateway.devtools.s3servers import RcloneS3Server, find_rclone
from gateway.devtools.seed import DEMO_GROUP, DEMO_PROJECT, Seeded, seed

INSTANCES = 3
# The LISTEN connection's own DSN, where the gateway has one: straight to PostgreSQL.
LISTEN_URL_VARIABLE = "GATEWAY_DATABASE_LISTEN_URL"


class Rotation:
    """Keeps nginx's rotation to the gateways that are ready.

    Open-source nginx checks upstreams only passively: a refused connection is retried on the
    next gateway and counts towards ``max_fails``, but a gateway that accepts connections and
    then hangs, or answers 503 because it lost PostgreSQL, stays in rotation. So this thread asks
    each gateway's ``/-/readiness`` every ``interval`` seconds; after ``misses`` failed answers
    in a row a gateway is marked ``down`` in the upstream file and nginx reloaded (requests in
    flight finish on the old workers), and one good answer brings it back. It never marks every
    gateway down: when none is ready, nginx's own checks are all that is left.
    """

    def __init__(self, nginx: Nginx, instances: list[GatewayInstance], *,
                 interval: float = 0.5, misses: int = 2,
                 on_change: Callable[[str, bool], None] | None = None) -> None:
        self._nginx = nginx
        self._instances = instances
        self._interval = interval
        self._misses = misses
        self._on_change = on_change or (lambda name, ready: None)
        self._missed = {i.name: 0 for i in instances}
        self._out: set[str] = set()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0

    @property
    def out(self) -> frozenset[str]:
        """Names of the gateways marked down right now (nginx already reloaded)."""
        with self._changed:
            return frozenset(self._out)

    def wait_until(self, predicate: Callable[[frozenset[str]], bool], timeout: float) -> bool:
        """Wait until ``predicate(out)`` holds; False after ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(frozenset(self._out)), timeout)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rotation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        with ThreadPoolExecutor(len(self._instances)) as probes:
            while not self._stop.wait(self._interval):
                answers = probes.map(lambda i: i.ready(timeout=2.0), self._instances)
                for instance, ready in zip(self._instances, answers, strict=True):
                    self._missed[instance.name] = 0 if ready else self._missed[instance.name] + 1
                wanted = {n for n, missed in self._missed.items() if missed >= self._misses}
                if len(wanted) == len(self._instances):
                    wanted = set()  # nothing ready: leave it to nginx's passive checks
                if wanted != self._out:
                    self._apply(wanted)

    def _apply(self, out: set[str]) -> None:
        upstreams = [Upstream("127.0.0.1", i.port, down=i.name in out) for i in self._instances]
        try:
            self._nginx.reload(upstreams)
        except LocalServiceError as exc:
            say(f"could not reload nginx: {exc}")
            return
        self.reloads += 1
        with self._changed:
            changed = out ^ self._out
            self._out = set(out)
            self._changed.notify_all()
        for name in sorted(changed):
            self._on_change(name, name not in out)


def check_programs() -> None:
    """Name every program the cluster needs that is missing, all at once, before starting."""
    problems = []
    for find in (find_nginx, find_pgbouncer, lambda: find_pg_binary("postgres"), find_rclone):
        try:
            find()
        except LocalServiceError as exc:
            problems.append(str(exc))
    if problems:
        raise LocalServiceError("missing programs:\n  " + "\n  ".join(problems))


class Cluster(Service):
    """Everything `gateway cluster` runs, in ``data_path``; nginx listens on ``port``.

    ``settings`` are the gateways' (their GATEWAY_* variables); the cluster sets what it owns:
    database, S3, ports, instance names, ``GATEWAY_DB_PGBOUNCER`` and the external URL.
    ``fast`` (tests) runs PostgreSQL without fsync.

    For fault injection (the soak, fault tests): ``s3_proxy`` puts a :class:`FaultyS3Proxy`
    between the gateways and S3 (presigned URLs still name S3 itself), ``instance_settings``
    overrides settings of single gateways by name (``{"gateway-3": {"download_mode":
    "proxy"}}``), and the methods below kill, stop, restart and freeze the parts one by one.
    """

    def __init__(self, data_path: Path, port: int, settings: config.Settings, *,
                 instances: int = INSTANCES, base_env: Mapping[str, str] | None = None,
                 fast: bool = False, announce: Callable[[str, bool], None] | None = None,
                 s3_proxy: bool = False,
                 instance_settings: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.data_dir = DataDir(data_path)
        root = self.data_dir.path
        self.port = port
        self._settings = settings
        self._count = instances
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._announce = announce
        self.postgres = PostgresCluster(root / "postgres", fast=fast)
        self.s3: RcloneS3Server | None = None
        self._want_proxy = s3_proxy
        self.s3_proxy: FaultyS3Proxy | None = None
        self._instance_settings = dict(instance_settings or {})
        self.pgbouncer: PgBouncer | None = None
        self.instances: list[GatewayInstance] = []
        self.nginx: Nginx | None = None
        self.rotation: Rotation | None = None
        self.seeded: Seeded | None = None
        self.database_url = ""
        self._started: list[Service] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, service: Service) -> None:
        service.start()
        self._started.append(service)

    def start(self) -> None:
        """Start everything (nothing is started unless the folder and the port are free);
        on any failure what was started is stopped again."""
        self.data_dir.acquire("gateway cluster")
        try:
            check_port("127.0.0.1", self.port)
            check_programs()
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        root = self.data_dir.path
        access, secret = self.data_dir.s3_credentials()
        if self.postgres.is_running():  # left by a killed run that held this folder
            self.postgres.stop()
        self._run(self.postgres)
        (root / "s3" / BUCKET).mkdir(parents=True, exist_ok=True)
        self.s3 = RcloneS3Server(root / "s3", access, secret, log_path=root / "rclone.log")
        self._run(self.s3)
        gateway_s3 = self.s3.endpoint_url
        if self._want_proxy:
            self.s3_proxy = FaultyS3Proxy(self.s3.endpoint_url, root / "s3proxy.log")
            self._run(self.s3_proxy)
            gateway_s3 = self.s3_proxy.endpoint_url
        self.database_url = self.postgres.create_database(DATABASE)
        self.seeded = asyncio.run(seed(self.database_url, self.data_dir.saved_token()))
        self.data_dir.save_token(self.seeded.token)
        if not (root / SAMPLE).exists():
            (root / SAMPLE).write_text("Hello from packgate!\n")
        assert self.postgres.port is not None
        self.pgbouncer = PgBouncer(root / "pgbouncer", self.postgres.port)
        self._run(self.pgbouncer)
        settings = self._settings.with_overrides(
            database_url=self.pgbouncer.database_url(DATABASE),
            db_pgbouncer=True,
            s3_endpoint_url=gateway_s3,
            s3_public_endpoint_url=self.s3.endpoint_url,
            s3_bucket=BUCKET,
            s3_access_key_id=access,
            s3_secret_access_key=secret,
            external_url=self.url,
            # nginx, on loopback, is the gateways' one proxy: its forwarded headers and request
            # ids are believed (client addresses in the gateways' logs, the ids nginx logs).
            trusted_proxies=config.parse_networks("127.0.0.1/32, ::1/128"),
        )
        extra = {}
        if LISTEN_URL_VARIABLE in config.ENV_VARIABLES:
            extra[LISTEN_URL_VARIABLE] = self.database_url
        self.instances = [
            GatewayInstance(f"gateway-{n}",
                            settings.with_overrides(**self._instance_settings.get(
                                f"gateway-{n}", {})),
                            self._base_env, root / f"gateway-{n}.log", extra_env=extra)
            for n in range(1, self._count + 1)
        ]
        for instance in self.instances:
            instance.launch()
            self._started.append(instance)
        for instance in self.instances:
            instance.wait_ready()
        self.nginx = Nginx(root / "nginx", self.port,
                           [Upstream("127.0.0.1", i.port) for i in self.instances])
        self._run(self.nginx)
        self.rotation = Rotation(self.nginx, self.instances, on_change=self._announce)
        self.rotation.start()

    def stop(self) -> None:
        """Stop everything started, newest first: the readiness watch, nginx (it lets requests
        in flight finish), the gateways (likewise), PgBouncer, S3, PostgreSQL."""
        if self.rotation is not None:
            self.rotation.stop()
            self.rotation = None
        started = self._started
        try:
            if self.nginx in started:
                self.nginx.stop()
            gateways = [g for g in self.instances if g in started]
            if gateways:
                with ThreadPoolExecutor(len(gateways)) as pool:
                    list(pool.map(lambda g: g.stop(), gateways))
            for service in (self.pgbouncer, self.s3_proxy, self.s3, self.postgres):
                if service in started:
                    service.stop()
        finally:
            started.clear()
            self.data_dir.release()

    def instance(self, name: str) -> GatewayInstance:
        return next(i for i in self.instances if i.name == name)

    def restart(self, name: str) -> None:
        """Start gateway ``name`` again on its port (after a kill); the readiness watch puts it
        back into nginx's rotation once it answers."""
        instance = self.instance(name)
        instance.stop()
        instance.start()
        if instance not in self._started:
            self._started.append(instance)

    # Faults, one part at a time. Each returns once the fault is in place (or undone).

    def kill(self, name: str) -> None:
        """SIGKILL gateway ``name`` (a crash); :meth:`restart` brings it back."""
        self.instance(name).kill()

    def terminate(self, name: str) -> None:
        """SIGTERM gateway ``name`` and wait until it has exited (its requests in flight get
        ``GATEWAY_SHUTDOWN_TIMEOUT``); :meth:`restart` brings it back."""
        self.instance(name).stop()

    def restart_postgres(self, *, down: float = 0.0) -> None:
        """Stop PostgreSQL (fast shutdown: sessions are cut), stay down ``down`` seconds, start
        it again on the same port."""
        self.postgres.stop("fast")
        if down > 0:
            threading.Event().wait(down)
        self.postgres.start()

    def restart_pgbouncer(self, *, down: float = 0.0) -> None:
        """Stop PgBouncer (every client connection closes), stay down ``down`` seconds, start
        it again on the same port."""
        assert self.pgbouncer is not None
        self.pgbouncer.stop()
        if down > 0:
            threading.Event().wait(down)
        self.pgbouncer.start()

    def pause_pgbouncer(self) -> None:
        """Freeze PgBouncer (SIGSTOP): queries hang instead of failing."""
        assert self.pgbouncer is not None
        self.pgbouncer.pause()

    def resume_pgbouncer(self) -> None:
        assert self.pgbouncer is not None
        self.pgbouncer.resume()

    def pause_s3(self) -> None:
        """Freeze the S3 server (SIGSTOP)."""
        assert self.s3 is not None
        self.s3.pause()

    def resume_s3(self) -> None:
        assert self.s3 is not None
        self.s3.resume()

    def s3_failing(self, failing: bool) -> None:
        """Make the S3 proxy answer 500s to a share of the gateways' S3 requests (or stop)."""
        if self.s3_proxy is None:
            raise LocalServiceError("this cluster was started without s3_proxy")
        if failing:
            self.s3_proxy.fail()
        else:
            self.s3_proxy.heal()


def _banner(cluster: Cluster) -> str:
    assert cluster.seeded is not None and cluster.pgbouncer is not None
    assert cluster.s3 is not None and cluster.nginx is not None
    root = cluster.data_dir.path
    seeded = cluster.seeded
    sample = shown_path(root / SAMPLE)
    url = (f"{cluster.url}/api/v4/projects/{seeded.project_id}/packages/generic/demo/1.0.0/"
           f"{sample.name}")
    gateways = "\n".join(
        f"  {i.name:<13}{i.url:<24}pid {i.pid}, log {shown_path(i.log_path)}"
        for i in cluster.instances
    )
    return f"""
packgate cluster is running at {cluster.url}  (project {DEMO_GROUP}/{DEMO_PROJECT} has id {seeded.project_id})

  nginx        {cluster.url:<24}deploy/nginx.conf; access log {shown_path(cluster.nginx.access_log)}
{gateways}
  PgBouncer    127.0.0.1:{cluster.pgbouncer.port:<14}transaction pooling, in front of PostgreSQL on 127.0.0.1:{cluster.postgres.port}
  S3 (rclone)  {cluster.s3.endpoint_url:<24}objects in {shown_path(root / "s3" / BUCKET)}

Token of the administrator 'root' (api scope; saved in {shown_path(cluster.data_dir.token_path)}, the same at every start):
  {seeded.token}

Upload a file, and download it, through nginx:
  curl --fail-with-body --header "PRIVATE-TOKEN: {seeded.token}" --upload-file {sample} "{url}"
  curl --fail-with-body --location --header "PRIVATE-TOKEN: {seeded.token}" --output {sample.name}.downloaded "{url}"

Kill a gateway (kill -9 PID) and keep uploading: nginx routes around it, and it leaves the
rotation as soon as its /-/readiness stops answering. Ctrl-C stops everything.
"""  # noqa: E501


def run_cluster(settings: config.Settings, data_path: Path, *, port: int = 8080) -> int:
    stop = threading.Event()

    def announce(name: str, ready: bool) -> None:
        say(f"{name} {'is ready again: back in' if ready else 'is not ready: out of'} "
            "nginx's rotation")

    cluster = Cluster(data_path, port, settings, announce=announce)
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        say("starting PostgreSQL, S3, PgBouncer, 3 gateways and nginx ...")
        cluster.start()
        print(_banner(cluster), flush=True)
        while not stop.wait(0.5):
            if (gone := _dead_part(cluster)) is not None:
                say(f"gateway cluster: {gone} exited; stopping everything")
                return 1
        return 0
    except LocalServiceError as exc:
        say(f"gateway cluster: {exc}")
        return 1
    finally:
        with contextlib.suppress(LocalServiceError):
            cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if cluster.seeded is not None:
            say("stopped.")


def _dead_part(cluster: Cluster) -> str | None:
    """The first part the cluster cannot run without that is no longer running (a gateway is
    not one: the others serve, which is the point)."""
    parts: list[tuple[str, Callable[[], bool]]] = [
        ("nginx", lambda: cluster.nginx is not None and cluster.nginx.is_running()),
        ("PgBouncer", lambda: cluster.pgbouncer is not None and cluster.pgbouncer.is_running()),
        ("the S3 server", lambda: cluster.s3 is not None and cluster.s3.is_running()),
        ("PostgreSQL", cluster.postgres.owns_process),
    ]
    for name, alive in parts:
        if not alive():
            return name
    return None
