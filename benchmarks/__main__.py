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
from benchmarks.report import Report
from gateway.config import parse_size

TARGETS = {"moto": 0.9, "rclone": 0.7}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--size", default="2GiB", help="file uploaded per round (default 2GiB)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per case (default 2, min 2)")
    p.add_argument("--servers", default="moto,rclone", help="S3 servers: moto,rclone")
    p.add_argument("--no-ceiling", action="store_true", help="skip the discarding-store case")
    p.add_argument("--concurrency", default="1,4,16,32",
                   help="concurrent uploads of the sweep ('' to skip)")
    p.add_argument("--sweep-size", default="128MiB", help="file size per upload in the sweep")
    p.add_argument("--sweep-on", default="null",
                   help="where the sweep stores: null (discarding store), moto, rclone")
    p.add_argument("--buffer-budget", default="256MiB",
                   help="GATEWAY_BUFFER_BUDGET of the gateways (default 256MiB)")
    p.add_argument("--download-seconds", type=float, default=10.0,
                   help="length of the redirect load (0 to skip)")
    p.add_argument("--download-clients", type=int, default=64)
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
    p.add_argument("--markdown", type=Path, help="also write the table here as Markdown")
    p.add_argument("--plot", type=Path, help="also plot throughput against concurrency (PNG)")
    p.add_argument("--workdir", type=Path,
                   help="scratch folder (default: a new temporary one, removed at the end)")
    args = p.parse_args(argv)
    args.size_bytes = parse_size(args.size)
    args.sweep_bytes = parse_size(args.sweep_size)
    args.budget_bytes = parse_size(args.buffer_budget)
    args.resumable_chunk_bytes = parse_size(args.resumable_chunk)
    args.server_list = [s for s in args.servers.split(",") if s]
    args.sweep_list = [int(n) for n in args.concurrency.split(",") if n]
    args.rounds = max(2, args.rounds)
    return args


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


def run(args: argparse.Namespace) -> Report:
    report = Report(size=args.size_bytes, rounds=args.rounds, machine=machine_note(),
                    budget=args.budget_bytes, command=" ".join(["python -m benchmarks",
                                                                *sys.argv[1:]]))
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
        backends: dict[str, h.Backend] = {}
        for name in {*args.server_list, *(s for s in args.sweep_list and
                                          args.sweep_on.split(",") if s != "null")}:
            backends[name] = h.start_backend(name, work, rclone_buffer_limit=1024 * h.MiB)
            stack.callback(backends[name].server.stop)

        for name in args.server_list:
            backend = backends[name]
            gw = h.start_gateway(db, work, name, backend=backend, extra_env=gw_env)
            try:
                for r in range(args.rounds):
                    # Alternate the order, so neither side always runs on a warmer machine.
                    order = ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct")
                    for side in order:
                        backend.fresh()
                        if side == "direct":
                            up = h.direct_upload(backend, path, f"direct-{r}.bin")
                        else:
                            up = h.gateway_upload(gw, db, path, f"{name}-{r}.bin")
                        report.add_upload(name, side, up)
                        log(f"{name} round {r + 1} {side}: {up.mb_per_s:.0f} MB/s")
                        backend.empty_bucket()
                report.rss[name] = gw.peak_rss()
            finally:
                gw.stop()
                backend.rest()

        if not args.no_ceiling:
            gw = h.start_gateway(db, work, "null", backend=None, extra_env=gw_env)
            try:
                for r in range(args.rounds):
                    up = h.gateway_upload(gw, db, path, f"null-{r}.bin")
                    report.add_upload("null", "gateway", up)
                    log(f"discarding store round {r + 1}: {up.mb_per_s:.0f} MB/s")
                report.rss["null"] = gw.peak_rss()
            finally:
                gw.stop()

        if args.metrics_rounds > 0:
            metrics_case(args, report, db, work, path, gw_env)

        if args.resumable_rounds > 0 and args.server_list:
            resumable_case(args, report, db, work, path, backends[args.server_list[0]],
                           gw_env)

        if args.sweep_list:
            sweep_path = h.make_file(work / "sweep.bin", args.sweep_bytes)
            for target in args.sweep_on.split(","):
                for n in args.sweep_list:
                    # A fresh process per step, so its peak RSS belongs to that step alone.
                    if target in backends:
                        backends[target].fresh()
                    gw = h.start_gateway(db, work, f"sweep-{target}-{n}",
                                         backend=backends.get(target), extra_env=gw_env)
                    try:
                        wall, statuses, errors = h.concurrent_uploads(
                            gw, db, sweep_path, n, f"sweep-{target}-{n}")
                        for err in errors[:3]:
                            log(f"sweep {target} x{n}: an upload failed: {err} "
                                f"(gateway log: {gw.log_path})")
                        rss = gw.peak_rss()
                    finally:
                        gw.stop()
                    if target in backends:
                        backends[target].empty_bucket()
                        backends[target].rest()
                    failed = sum(1 for s in statuses if s != 201)
                    report.add_sweep(target, n, args.sweep_bytes, wall, failed, rss)
                    log(f"sweep {target} x{n}: {n * args.sweep_bytes / h.MB / wall:.0f} MB/s, "
                        f"{failed} failed, peak RSS {rss / h.MiB:.0f} MiB")

        if args.download_seconds > 0:
            backend = backends.get(args.server_list[0]) if args.server_list else None
            gw = h.start_gateway(db, work, "downloads", backend=backend, extra_env=gw_env)
            try:
                small = h.make_file(work / "small.bin", 1024)
                h.gateway_upload(gw, db, small, "small.bin")
                url = h.file_url(gw, db, "small.bin")
                expect = 302 if backend is not None else 200
                if expect != 302:
                    log("no S3 server: downloads are streamed, not redirected")
                most = h.redirect_load(url, db.token, clients=args.download_clients,
                                       seconds=args.download_seconds)
                log(f"redirects, as fast as answered: {most.per_second:.0f}/s, p50 "
                    f"{most.p50_ms:.1f} ms, p99 {most.p99_ms:.1f} ms, {most.errors} errors")
                paced = h.redirect_load(url, db.token, clients=args.download_clients,
                                        seconds=args.download_seconds, rate=args.download_rate)
                log(f"redirects at {args.download_rate:.0f}/s: {paced.per_second:.0f}/s, p50 "
                    f"{paced.p50_ms:.1f} ms, p99 {paced.p99_ms:.1f} ms, {paced.errors} errors")
                report.downloads = most
                report.downloads_paced = paced
                report.download_rate = args.download_rate
                report.downloads_server = backend.name if backend else "null"
            finally:
                gw.stop()
    return report


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
