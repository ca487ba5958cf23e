"""``python -m benchmarks``: the gateway against the same bytes sent straight to S3.

Starts its own PostgreSQL, S3 servers (moto, ``rclone serve s3``) and gateway processes on
loopback, runs every case and prints one table (optionally Markdown and a PNG plot). Nothing
outside the run's scratch folder is touched; everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks import harness as h
from benchmarks import peer
from benchmarks.counting import counting_proxies
from benchmarks.report import Report
from gateway.config import Settings, parse_size

TARGETS = {"moto": 0.9, "rclone": 0.7}
SERVERS = ("moto", "rclone")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--size", default="2GiB", help="file uploaded per round (default 2GiB)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per case (default 2, min 2)")
    p.add_argument("--servers", default="moto,rclone", help="S3 servers: moto,rclone")
    p.add_argument("--no-ceiling", action="store_true", help="skip the discarding-store case")
    p.add_argument("--concurrency", default="1,4,16,32",
                   help="concurrent uploads of the sweep ('' to skip)")
    p.add_argument("--sweep-size", default="128MiB", help="file size per upload in the sweep")
    p.add_argument("--sweep-on", default="null,rclone",
                   help="where the sweep stores: null (discarding store), moto, rclone; into "
                        "an S3 server the same number of direct uploads runs beside it")
    p.add_argument("--sweep-workers", default="1,2",
                   help="gateway worker processes of the sweep's steps (gateway serve "
                        "--workers), each value a sweep of its own")
    p.add_argument("--buffer-budget", default="256MiB",
                   help="GATEWAY_BUFFER_BUDGET of the gateways (default 256MiB)")
    p.add_argument("--download-seconds", type=float, default=10.0,
                   help="length of the redirect load (0 to skip)")
    p.add_argument("--download-clients", type=int, default=64)
    p.add_argument("--download-server", default="moto", choices=SERVERS,
                   help="S3 server that presigns the redirects and serves the proxied "
                        "download (default moto)")
    p.add_argument("--download-workers", type=int, default=2,
                   help="worker processes of the redirect case's gateway, and of the bare "
                        "aiohttp app it is compared with (default 2)")
    p.add_argument("--proxy-size", default="2GiB",
                   help="file downloaded through GATEWAY_DOWNLOAD_MODE=proxy and straight "
                        "from S3 with curl ('0' to skip)")
    p.add_argument("--download-rate", type=float, default=3000.0,
                   help="requests a second of the paced redirect load (default 3000)")
    p.add_argument("--metrics-rounds", type=int, default=4,
                   help="rounds of the metrics on/off case: the same upload into the "
                        "discarding store with GATEWAY_METRICS=true and false, alternating, "
                        "scraped every second while on (0 to skip)")
    p.add_argument("--metrics-off", action="store_true",
                   help="run every other case's gateways with GATEWAY_METRICS=false")
    p.add_argument("--resumable-rounds", type=int, default=2,
                   help="rounds of the resumable case: plain PUT against `gateway upload` in "
                        "--resumable-chunk requests, the same file into the first S3 server, "
                        "alternating (0 to skip)")
    p.add_argument("--resumable-chunk", default="64MiB", help="bytes per resumable request")
    p.add_argument("--no-peer", action="store_true",
                   help="skip the OCI distribution registry (docker-registry) as a peer; "
                        "without the program it is skipped anyway, with a line saying so")
    p.add_argument("--small-seconds", type=float, default=8.0,
                   help="length of each small-file load (0 to skip the case)")
    p.add_argument("--small-rounds", type=int, default=2, help="rounds of each small-file load")
    p.add_argument("--small-clients", type=int, default=32)
    p.add_argument("--small-size", default="4KiB", help="size of each small file")
    p.add_argument("--small-on", default="moto,rclone",
                   help="S3 servers of the small-file case (the peer runs on moto only)")
    p.add_argument("--count-uploads", type=int, default=20,
                   help="small uploads, one at a time, whose PostgreSQL round trips and S3 "
                        "requests are counted through proxies (0 to skip)")
    p.add_argument("--markdown", type=Path, help="also write the table here as Markdown")
    p.add_argument("--plot", type=Path, help="also plot throughput against concurrency (PNG)")
    p.add_argument("--workdir", type=Path,
                   help="scratch folder (default: a new temporary one, removed at the end)")
    args = p.parse_args(argv)
    args.size_bytes = parse_size(args.size)
    args.sweep_bytes = parse_size(args.sweep_size)
    args.budget_bytes = parse_size(args.buffer_budget)
    args.resumable_chunk_bytes = parse_size(args.resumable_chunk)
    args.server_list = _names(p, "--servers", args.servers, SERVERS)
    args.small_list = _names(p, "--small-on", args.small_on, SERVERS)
    args.small_bytes = parse_size(args.small_size)
    args.proxy_bytes = parse_size(args.proxy_size) if args.proxy_size not in ("", "0") else 0
    try:
        args.sweep_worker_list = [int(n) for n in args.sweep_workers.split(",") if n.strip()]
    except ValueError:
        p.error(f"--sweep-workers: not a list of numbers: {args.sweep_workers!r}")
    if any(n < 1 for n in args.sweep_worker_list) or args.download_workers < 1:
        p.error("worker counts start at 1")
    args.sweep_targets = _names(p, "--sweep-on", args.sweep_on, ("null", *SERVERS))
    try:
        args.sweep_list = [int(n) for n in args.concurrency.split(",") if n.strip()]
    except ValueError:
        p.error(f"--concurrency: not a list of numbers: {args.concurrency!r}")
    if any(n < 1 for n in args.sweep_list):
        p.error("--concurrency: every step needs at least one upload")
    args.rounds = max(2, args.rounds)
    return args


def _names(p: argparse.ArgumentParser, option: str, value: str,
           known: tuple[str, ...]) -> list[str]:
    """A comma-separated list of known names ('' is none), refused up front when misspelt
    rather than half way through the run."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    if unknown := [n for n in names if n not in known]:
        p.error(f"{option}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return list(dict.fromkeys(names))


def machine_note() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs ({model or platform.machine()}), {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, load average at start "
            f"{load}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Backends:
    """The S3 servers of a run, each started when a case first needs it and stopped at the end
    (a case never assumes another case left a server running)."""

    def __init__(self, work: Path, stack: ExitStack) -> None:
        self._work = work
        self._stack = stack
        self._started: dict[str, h.Backend] = {}

    def get(self, name: str) -> h.Backend:
        if name not in self._started:
            backend = h.start_backend(name, self._work, rclone_buffer_limit=1024 * h.MiB)
            self._stack.callback(backend.server.stop)
            self._started[name] = backend
        backend = self._started[name]
        backend.ensure()
        return backend


def run(args: argparse.Namespace) -> Report:
    report = Report(size=args.size_bytes, rounds=args.rounds, machine=machine_note(),
                    budget=args.budget_bytes, command=" ".join(["python -m benchmarks",
                                                                *sys.argv[1:]]))
    report.small_size, report.small_clients = args.small_bytes, args.small_clients
    # The gateways run with the default part size (the harness passes no GATEWAY_PART_SIZE).
    report.part_size = Settings.__dataclass_fields__["part_size"].default
    gw_env = {"GATEWAY_BUFFER_BUDGET": str(args.budget_bytes)}
    if args.metrics_off:
        gw_env["GATEWAY_METRICS"] = "false"
    with ExitStack() as stack:
        if args.workdir:
            work = args.workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(tempfile.mkdtemp(prefix="packgate-bench-"))
            stack.callback(shutil.rmtree, work, True)
        log(f"scratch folder {work}")
        db = h.start_database(work)
        stack.callback(db.cluster.stop)
        path = h.make_file(work / "upload.bin", args.size_bytes)
        report.floor_ms = h.digest_floor(path) * 1000
        log(f"md5+sha1+sha256 floor: {report.floor_ms:.2f} CPU-ms/MB")
        backends = Backends(work, stack)
        registry = None if args.no_peer else peer.find_registry()
        if registry is None and not args.no_peer:
            log(f"the OCI registry ({peer.PROGRAM}) is not installed: no peer in this run "
                "(scripts/os-packages.sh bench installs it)")
            report.peer_missing = True
        for name in args.server_list:
            uploads_case(args, report, db, work, path, backends.get(name), gw_env,
                         registry if name == "moto" else None)
        if args.count_uploads > 0 and args.small_list:
            count_case(args, report, db, work, backends.get(args.small_list[0]), gw_env)
        if args.small_seconds > 0:
            for name in args.small_list:
                small_case(args, report, db, work, backends.get(name), gw_env,
                           registry if name == "moto" else None)
        if not args.no_ceiling:
            ceiling_case(args, report, db, work, path, gw_env)
        if args.metrics_rounds > 0:
            metrics_case(args, report, db, work, path, gw_env)
        if args.resumable_rounds > 0 and args.server_list:
            resumable_case(args, report, db, work, path, backends.get(args.server_list[0]),
                           gw_env)
        if args.sweep_list:
            sweep_case(args, report, db, work, backends, gw_env)
        if args.download_seconds > 0:
            downloads_case(args, report, db, work, backends.get(args.download_server), gw_env)
        if args.proxy_bytes:
            backend = backends.get(args.download_server)
            proxy_case(args, report, db, work, backend, gw_env)
            backend.rest()
    return report


def uploads_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
                 path: Path, backend: h.Backend, gw_env: dict[str, str],
                 registry: str | None) -> None:
    """The same file straight to ``backend``, through the gateway and (moto) pushed to the OCI
    registry as a blob; rounds alternate the order."""
    name = backend.name
    gw = h.start_gateway(db, work, name, backend=backend, extra_env=gw_env)
    reg = None
    if registry is not None:
        reg = peer.start_registry(registry, work, endpoint=backend.endpoint, bucket=h.BUCKET,
                                  access_key=h.ACCESS_KEY, secret_key=h.SECRET_KEY)
    try:
        sides = ["direct", "gateway", *(["peer"] if reg else [])]
        for r in range(args.rounds):
            # Rotate the order, so no side always runs on a warmer machine.
            for side in sides[r % len(sides):] + sides[: r % len(sides)]:
                backend.fresh()
                if side == "direct":
                    up = h.direct_upload(backend, path, f"direct-{r}.bin")
                elif side == "gateway":
                    up = h.gateway_upload(gw, db, path, f"{name}-{r}.bin")
                else:
                    assert reg is not None
                    # Of the file as it is now: each gateway upload gives it new first bytes.
                    digest = peer.sha256_of(path)
                    cpu0 = h.cpu_seconds(reg.pid)
                    seconds = peer.push_blob(reg, path, digest)
                    up = h.Upload(seconds, path.stat().st_size,
                                  cpu_seconds=h.cpu_seconds(reg.pid) - cpu0)
                report.add_upload(name, side, up)
                log(f"{name} round {r + 1} {side}: {up.mb_per_s:.0f} MB/s")
                # Also what the registry wrote: each round pushes the blob anew.
                backend.empty_bucket()
        report.rss[name] = gw.peak_rss()
    finally:
        gw.stop()
        if reg is not None:
            reg.stop()
        backend.rest()


def count_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
               backend: h.Backend, gw_env: dict[str, str]) -> None:
    """What one small upload costs in PostgreSQL round trips and S3 requests, counted by
    proxies on the gateway's way to both (a gateway of its own: the proxies stay out of the
    timed cases)."""
    assert db.cluster.port is not None and backend.server.port is not None
    # A stale window of an hour: no sweep (nor its queries) falls among the counted uploads.
    env = {**gw_env, "GATEWAY_STALE_UPLOAD_SECONDS": "3600"}
    # Distinct bodies: identical ones would be deduplicated (a lookup and a delete more).
    def data(i: int) -> bytes:
        return (i.to_bytes(8, "big") + os.urandom(args.small_bytes))[: args.small_bytes]

    with counting_proxies(db.cluster.port, backend.server.port) as (pg, s3):
        gw = h.start_gateway(
            db, work, f"count-{backend.name}", backend=backend, extra_env=env,
            database_url=db.url.replace(f":{db.cluster.port}/", f":{pg.port}/"),
            s3_endpoint=f"http://127.0.0.1:{s3.port}")
        try:
            base = h.file_url(gw, db, "")
            # Warm: pool connections opened, statements prepared, the token verified.
            for i in range(3):
                h.put_small(f"{base}warm-{i}.bin", db.token, data(i))
            pg0, s30 = pg.snapshot(), s3.snapshot()
            for i in range(args.count_uploads):
                status = h.put_small(f"{base}count-{i}.bin", db.token, data(1000 + i))
                if status != 201:
                    raise RuntimeError(f"counted upload answered {status}")
            pg1, s31 = pg.snapshot(), s3.snapshot()
        finally:
            gw.stop()
    n = args.count_uploads
    report.round_trips = {"server": backend.name, "uploads": n,
                          "pg": (pg1["round trips"] - pg0["round trips"]) / n,
                          "s3": {k: (s31[k] - s30[k]) / n for k in s31 if s31[k] - s30[k]}}
    log(f"per small upload: {report.round_trips['pg']:.2f} PostgreSQL round trips, S3 "
        f"requests {report.round_trips['s3']}")


def small_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
               backend: h.Backend, gw_env: dict[str, str], registry: str | None) -> None:
    """Small files from many clients at once: through the gateway, as direct PutObject
    calls, and (moto) as OCI blob pushes; rounds alternate the order."""
    name = backend.name
    backend.fresh()
    gw = h.start_gateway(db, work, f"small-{name}", backend=backend, extra_env=gw_env)
    reg = None
    if registry is not None:
        reg = peer.start_registry(registry, work, endpoint=backend.endpoint, bucket=h.BUCKET,
                                  access_key=h.ACCESS_KEY, secret_key=h.SECRET_KEY)
    common = {"clients": args.small_clients, "seconds": args.small_seconds,
              "size": args.small_bytes}
    try:
        sides = ["direct", "gateway", *(["peer"] if reg else [])]
        for r in range(max(1, args.small_rounds)):
            for side in sides[r % len(sides):] + sides[: r % len(sides)]:
                prefix = f"small-{side}-{r}"
                if side == "direct":
                    res = h.small_load("direct", backend.endpoint, bucket=h.BUCKET,
                                       prefix=prefix, **common)
                elif side == "gateway":
                    res = h.small_load("gateway", h.file_url(gw, db, "").rstrip("/"),
                                       token=db.token, prefix=prefix, **common)
                else:
                    assert reg is not None
                    res = h.small_load("registry", reg.url, repository=peer.REPOSITORY,
                                       prefix=prefix, **common)
                report.add_small(name, side, res)
                log(f"small files {name} round {r + 1} {side}: {res.per_second:.0f}/s, p50 "
                    f"{res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms, {res.errors} errors"
                    + (f" (first: {res.first_error})" if res.errors else ""))
    finally:
        gw.stop()
        if reg is not None:
            reg.stop()
        backend.empty_bucket()
        backend.rest()


def ceiling_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
                 path: Path, gw_env: dict[str, str]) -> None:
    """The same upload into the discarding store: the gateway's own ceiling."""
    gw = h.start_gateway(db, work, "null", backend=None, extra_env=gw_env)
    try:
        for r in range(args.rounds):
            up = h.gateway_upload(gw, db, path, f"null-{r}.bin")
            report.add_upload("null", "gateway", up)
            log(f"discarding store round {r + 1}: {up.mb_per_s:.0f} MB/s")
        report.rss["null"] = gw.peak_rss()
    finally:
        gw.stop()


def sweep_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
               backends: Backends, gw_env: dict[str, str]) -> None:
    """1, 4, 16, 32 … uploads at once, a fresh gateway process per step; into an S3 server
    the same number of direct uploads (a boto3 process each) right before."""
    sweep_path = h.make_file(work / "sweep.bin", args.sweep_bytes)
    for target in args.sweep_targets:
        for workers in args.sweep_worker_list:
            for n in args.sweep_list:
                backend = backends.get(target) if target != "null" else None
                if backend is not None and workers == args.sweep_worker_list[0]:
                    backend.fresh()
                    wall, errors = h.concurrent_direct_uploads(backend, sweep_path, n,
                                                               f"direct-{n}")
                    report.add_sweep(target, n, args.sweep_bytes, wall, len(errors), 0,
                                     side="direct")
                    log(f"sweep {target} x{n} direct: "
                        f"{n * args.sweep_bytes / h.MB / wall:.0f} MB/s, {len(errors)} failed")
                    backend.empty_bucket()
                sweep_step(args, report, db, work, backend, target, n, workers, sweep_path,
                           gw_env)


def sweep_step(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
               backend: h.Backend | None, target: str, n: int, workers: int,
               sweep_path: Path, gw_env: dict[str, str]) -> None:
    if backend is not None:
        backend.fresh()
    # A fresh process per step, so its peak RSS belongs to that step alone.
    label = f"sweep-{target}-{n}-w{workers}"
    gw = h.start_gateway(db, work, label, backend=backend,
                         extra_env={**gw_env, "GATEWAY_WORKERS": str(workers)})
    try:
        wall, statuses, errors = h.concurrent_uploads(gw, db, sweep_path, n, label)
        for err in errors[:3]:
            log(f"sweep {target} x{n}: an upload failed: {err} (gateway log: {gw.log_path})")
        rss = gw.peak_rss()
    finally:
        gw.stop()
    if backend is not None:
        backend.empty_bucket()
        backend.rest()
    failed = sum(1 for s in statuses if s != 201)
    report.add_sweep(target, n, args.sweep_bytes, wall, failed, rss, workers=workers)
    log(f"sweep {target} x{n} ({workers} worker(s)): "
        f"{n * args.sweep_bytes / h.MB / wall:.0f} MB/s, {failed} failed, peak RSS "
        f"{rss / h.MiB:.0f} MiB")


def downloads_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
                   backend: h.Backend, gw_env: dict[str, str]) -> None:
    """Redirects from ``--download-clients`` clients, as fast as answered and paced, against
    a gateway of ``--download-workers`` processes and a bare aiohttp app answering the same
    302 with as many."""
    env = {**gw_env, "GATEWAY_WORKERS": str(args.download_workers)}
    gw = h.start_gateway(db, work, "downloads", backend=backend, extra_env=env)
    try:
        small = h.make_file(work / "small.bin", 1024)
        h.gateway_upload(gw, db, small, "small.bin")
        url = h.file_url(gw, db, "small.bin")
        most = h.measured_load(url, db.token, gw.pid, db, clients=args.download_clients,
                               seconds=args.download_seconds)
        log(f"redirects, as fast as answered: {most.per_second:.0f}/s, p50 "
            f"{most.p50_ms:.1f} ms, p99 {most.p99_ms:.1f} ms, {most.errors} errors; "
            f"{most.cpu_ms or 0:.2f} gateway and {most.db_cpu_ms or 0:.2f} PostgreSQL "
            "CPU-ms each")
        paced = h.redirect_load(url, db.token, clients=args.download_clients,
                                seconds=args.download_seconds, rate=args.download_rate)
        log(f"redirects at {args.download_rate:.0f}/s: {paced.per_second:.0f}/s, p50 "
            f"{paced.p50_ms:.1f} ms, p99 {paced.p99_ms:.1f} ms, {paced.errors} errors")
    finally:
        gw.stop()
    bare = h.start_bare_redirects(args.download_workers)
    try:
        ceiling = h.measured_load(bare.url, "-", bare.proc.pid, clients=args.download_clients,
                                  seconds=args.download_seconds)
        log(f"bare aiohttp 302s: {ceiling.per_second:.0f}/s, p99 {ceiling.p99_ms:.1f} ms, "
            f"{ceiling.cpu_ms or 0:.2f} CPU-ms each")
    finally:
        bare.stop()
    report.downloads = most
    report.downloads_paced = paced
    report.downloads_bare = ceiling
    report.download_rate = args.download_rate
    report.downloads_server = backend.name
    report.download_clients = args.download_clients
    report.download_workers = args.download_workers
    backend.rest()


def proxy_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
               backend: h.Backend, gw_env: dict[str, str]) -> None:
    """One big file through ``GATEWAY_DOWNLOAD_MODE=proxy`` and straight from the S3 server
    (a presigned URL), both with curl, alternating; the gateway's RSS before and at peak."""
    path = h.make_file(work / ("upload.bin" if args.proxy_bytes == args.size_bytes
                               else "proxy.bin"), args.proxy_bytes)
    # Uploaded by a gateway of its own: the serving one's peak RSS is then its downloads'.
    up = h.start_gateway(db, work, "proxy-upload", backend=backend, extra_env=gw_env)
    try:
        h.gateway_upload(up, db, path, "proxy.bin")
    finally:
        up.stop()
    key = backend.client().list_objects_v2(Bucket=h.BUCKET)["Contents"]
    key = max(key, key=lambda o: o["LastModified"])["Key"]
    direct_url = h.presigned_get(backend, key)
    gw = h.start_gateway(db, work, "proxy", backend=backend,
                         extra_env={**gw_env, "GATEWAY_DOWNLOAD_MODE": "proxy"})
    try:
        idle = gw.peak_rss()
        for r in range(args.rounds):
            for side in (("direct", "gateway") if r % 2 == 0 else ("gateway", "direct")):
                if side == "direct":
                    seconds, size = h.curl_download(direct_url)
                else:
                    seconds, size = h.curl_download(h.file_url(gw, db, "proxy.bin"),
                                                    {"PRIVATE-TOKEN": db.token})
                report.proxy[side].append(h.Upload(seconds, size))
                log(f"proxy download round {r + 1} {side}: {size / h.MB / seconds:.0f} MB/s")
        report.proxy_rss = (idle, gw.peak_rss())
        report.proxy_server = backend.name
    finally:
        gw.stop()
        backend.empty_bucket()


def metrics_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
                 path: Path, gw_env: dict[str, str]) -> None:
    """What counting costs an upload: one gateway with metrics, one without, the same file
    into the discarding store (where nothing else hides the difference), alternating."""
    gws = {on: h.start_gateway(db, work, f"metrics-{on}", backend=None,
                               extra_env={**gw_env, "GATEWAY_METRICS": str(on).lower()})
           for on in (True, False)}
    try:
        for r in range(args.metrics_rounds):
            for on in ((True, False) if r % 2 == 0 else (False, True)):
                with h.scraping(gws[on] if on else None):
                    up = h.gateway_upload(gws[on], db, path, f"metrics-{on}-{r}.bin")
                report.add_upload("metrics-on" if on else "metrics-off", "gateway", up)
                log(f"metrics {'on' if on else 'off'} round {r + 1}: {up.mb_per_s:.0f} MB/s, "
                    f"{up.cpu_seconds / (up.size / h.MB) * 1000:.2f} CPU-ms/MB")
    finally:
        for gw in gws.values():
            gw.stop()


def resumable_case(args: argparse.Namespace, report: Report, db: h.Database, work: Path,
                   path: Path, backend: h.Backend, gw_env: dict[str, str]) -> None:
    """A resumable upload in 64 MiB requests against a plain PUT: one gateway, the same S3
    server and file, rounds alternating which goes first."""
    backend.ensure()
    gw = h.start_gateway(db, work, "resumable", backend=backend, extra_env=gw_env)
    try:
        for r in range(args.resumable_rounds):
            for side in (("put", "resumable") if r % 2 == 0 else ("resumable", "put")):
                backend.fresh()
                if side == "put":
                    up = h.gateway_upload(gw, db, path, f"put-{r}.bin")
                else:
                    up = h.resumable_upload(gw, db, path, f"resumable-{r}.bin",
                                            args.resumable_chunk_bytes)
                report.add_upload(f"resumable-{backend.name}", side, up)
                log(f"resumable case round {r + 1} {side}: {up.mb_per_s:.0f} MB/s")
                backend.empty_bucket()
        report.resumable_chunk = args.resumable_chunk_bytes
    finally:
        gw.stop()
        backend.rest()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: every server the run started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("curl") is None:
        print("the benchmark needs curl on PATH", file=sys.stderr)
        return 2
    report = run(args)
    text = report.markdown(TARGETS)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.plot:
        report.plot(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
