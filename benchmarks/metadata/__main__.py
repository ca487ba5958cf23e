"""``python -m benchmarks.metadata``: PostgreSQL's side of the registry at ten million files.

Starts its own PostgreSQL (the real schema, through the migrations), fills it with
``generate_series`` (``--scale 1``: 10,000 projects, 1,000 groups, 2 million packages, 10 million
files), starts moto's S3 server and one ``gateway serve`` and measures every operation the
registry's metadata serves: p50/p99 per operation, the statements each costs, every target with
met / not met, and the query plans (EXPLAIN ANALYZE, BUFFERS) of the slow ones. Everything runs
in a scratch folder and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import asyncpg

from benchmarks import harness as h
from benchmarks.__main__ import machine_note
from benchmarks.metadata import ops, plans
from benchmarks.metadata.fill import Filled, Sizes, fill
from gateway.config import Settings
from gateway.db.migrate import migrate
from gateway.devtools.postgres import PostgresCluster

# The targets, in milliseconds (p99).
LOOKUP_MS, COMMIT_MS, FIRST_PAGE_MS = 10.0, 20.0, 50.0
# A deep page is "not slower than the first" within this share, or 1 ms on a fast first page.
DEEP_SLACK = 1.2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.metadata", description=__doc__)
    p.add_argument("--scale", type=float, default=1.0,
                   help="share of the issue's sizes to fill (default 1: 10 million files)")
    p.add_argument("--requests", type=int, default=300,
                   help="requests per measured operation (default 300)")
    p.add_argument("--concurrency", type=int, default=32, help="concurrent commits (32)")
    p.add_argument("--shared-buffers", default="2GB", help="PostgreSQL's shared_buffers")
    p.add_argument("--markdown", type=Path, help="also write the report here")
    p.add_argument("--workdir", type=Path,
                   help="scratch folder (default: a new temporary one, removed at the end)")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start_postgres(work: Path, shared_buffers: str) -> PostgresCluster:
    cluster = PostgresCluster(work / "pg", fast=True, settings={
        "shared_buffers": shared_buffers, "shared_preload_libraries": "pg_stat_statements",
        "max_wal_size": "4GB", "maintenance_work_mem": "512MB", "work_mem": "16MB",
        "checkpoint_timeout": "30min", "autovacuum": "on",
    })
    cluster.start()
    return cluster


class Run:
    """One benchmark run: the filled database, the serving gateway, the results."""

    def __init__(self, args: argparse.Namespace, url: str, filled: Filled) -> None:
        self.args = args
        self.url = url
        self.f = filled
        self.results: list[ops.Result] = []
        self.targets: dict[str, tuple[str, bool | None]] = {}
        self.plan_text: dict[str, str] = {}
        self.sizes: list[tuple] = []
        self.justified: list[plans.Justification] = []

    def judge(self, result: ops.Result, target: str, met: bool | None) -> None:
        self.results.append(result)
        self.targets[result.name] = (target, met)
        log(f"{result.name}: p50 {result.p50:.2f} ms, p99 {result.p99:.2f} ms"
            + (f", {len(result.errors)} errors ({result.errors[0]})" if result.errors else ""))

    def under(self, result: ops.Result, limit: float) -> None:
        ok = not result.errors and result.p99 < limit
        self.judge(result, f"p99 < {limit:g} ms", ok)

    def not_slower(self, deep: ops.Result, first: ops.Result) -> None:
        ok = not deep.errors and deep.p99 <= max(first.p99 * DEEP_SLACK, first.p99 + 1.0)
        self.judge(deep, f"p99 ≤ first page's ({first.p99:.1f} ms) + 20%", ok)


# Statements are counted on requests of their own, after the timed rounds.
COUNTED = 20
# The measured requests that leave work behind them (measured after the reads).
DELETE_OP, UPLOAD_OP = "delete package (204)", "upload PUT, 1 KiB, one at a time (HTTP)"
WRITES = {DELETE_OP, UPLOAD_OP}


async def measure_http(run: Run, gw_url: str, conn: asyncpg.Connection) -> None:
    """Every read and delete, one request of each in turn per round, so that the load of a
    shared machine falls on all of them alike; then the concurrent uploads."""
    f, n = run.f, run.args.requests
    counter = ops.Statements(conn)
    counting = await counter.available()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        http = ops.Http(session, gw_url, f.token)
        specs, judges = await _read_specs(run, http, conn, n + COUNTED + 1)
        for _, one in specs:
            await one(-1)  # warm: token cache, prepared statements, connections
        # Reads in rounds of their own, writes after them: what a write leaves to background
        # work (the deletion worker's DeleteObject calls, the S3 server's share of a PutObject)
        # would otherwise land on the read that follows it in the round.
        reads = [(name, one) for name, one in specs if name not in WRITES]
        writes = [(name, one) for name, one in specs if name in WRITES]
        # Each group's statements are counted right after its rounds, before the writes'
        # background work (the deletion worker draining what the deletes queued) runs.
        results: dict[str, ops.Result] = {}
        for group in (reads, writes):
            results |= await ops.interleaved(group, n)
            if counting:
                await _count_statements(counter, group, n, results)
        for name, _ in specs:
            judges[name](results[name], results)
        uploads = [ops.file_path(f.big_project_id, "bench-put", f"1.{i // 4}", f"f{i % 4}.bin")
                   for i in range(-1, n)]
        put = _each(http, "PUT", uploads, 201, b"u" * 1024, offset=1)
        await put(-1)
        if counting:
            await counter.reset()
        result = await ops.timed(f"upload PUT, 1 KiB, {run.args.concurrency} at once (HTTP)",
                                 n, run.args.concurrency, put)
        if counting:
            calls, ms = await counter.calls()
            result.statements, result.db_ms = calls / n, ms / n
        run.judge(result, "—", None)


async def _count_statements(counter: ops.Statements, specs: list, n: int,
                            results: dict[str, ops.Result]) -> None:
    for name, one in specs:
        await counter.reset()
        for i in range(COUNTED):
            await one(n + i)
        calls, ms = await counter.calls()
        results[name].statements = calls / COUNTED
        results[name].db_ms = ms / COUNTED


async def _read_specs(run: Run, http: ops.Http, conn: asyncpg.Connection, count: int):
    """The measured requests (name, one request) and how each is judged."""
    f = run.f
    files = await ops.sample_files(conn, count)
    pkgs = f"/api/v4/projects/{f.big_project_id}/packages"
    group = f"/api/v4/groups/{f.big_group_id}/packages"
    files_url = f"{pkgs}/{f.big_package_id}/package_files"
    keyset = "pagination=keyset&order_by=id&sort=asc"
    big_total = await conn.fetchval(
        "SELECT count(*) FROM packages WHERE project_id = $1", f.big_project_id)
    deep_page = max(1, min(math.ceil(big_total / 20), 50_000 // 20))
    past_limit = big_total > 50_000
    deep_id = await conn.fetchval(
        "SELECT id FROM packages WHERE project_id = $1 ORDER BY id DESC OFFSET 30 LIMIT 1",
        f.big_project_id)
    last_files = max(1, math.ceil(f.sizes.big_package_files / 20))
    file_deep = await conn.fetchval(
        "SELECT id FROM package_files WHERE package_id = $1 ORDER BY id DESC OFFSET 30 "
        "LIMIT 1", f.big_package_id)
    dup = await conn.fetchrow("""
        SELECT p.project_id, p.name, p.version, pf.file_name FROM packages p
        JOIN package_files pf ON pf.package_id = p.id WHERE p.project_id = $1 LIMIT 1
    """, f.duplicate_project_id)
    doomed = [(r["project_id"], r["id"]) for r in await conn.fetch(
        "SELECT id, project_id FROM packages WHERE id = ANY($1::bigint[]) ORDER BY id",
        await ops.deletable_packages(conn, f, count + 1))]

    def get(path: str):
        return http.expect("GET", path, 200)

    def under(limit: float):
        return lambda r, _: run.under(r, limit)

    def bounded(r: ops.Result, _: object) -> None:
        # GitLab offers keyset pages for these lists and stops offset pages at 50,000 rows (a
        # 405 past it): the deepest offset page reads at most that many index entries, and is
        # held to the first pages' target; keyset pages are the ones that cost what a first does.
        ok = not r.errors and r.p99 < FIRST_PAGE_MS
        run.judge(r, f"p99 < {FIRST_PAGE_MS:g} ms at the offset limit (bounded)", ok)

    def like(first: str):
        return lambda r, results: run.not_slower(r, results[first])

    def info(r: ops.Result, _: object) -> None:
        run.judge(r, "—", None)

    big_first = "project list, first page (big project)"
    group_first = "group list, first page (group of a big project)"
    files_first = "package files, first page (20,000-file package)"
    table = [
        ("baseline: GET /-/health (HTTP, no database)",
         http.expect("GET", "/-/health", 200), info),
        ("download lookup (302 redirect)", _each(http, "GET", files, 302), under(LOOKUP_MS)),
        ("HEAD", _each(http, "HEAD", files, 200), under(LOOKUP_MS)),
        (big_first, get(pkgs), under(FIRST_PAGE_MS)),
        ("project list, first page (normal project)",
         get(f"/api/v4/projects/{f.normal_project_id}/packages"), under(FIRST_PAGE_MS)),
        (f"project list, offset page {deep_page} (big project)", get(f"{pkgs}?page={deep_page}"),
         bounded),
        ("project list, a page past the offset limit (405)",
         http.expect("GET", f"{pkgs}?page={deep_page + 1}", 405 if past_limit else 200),
         lambda r, _: run.judge(r, "GitLab's 405" if past_limit else "200 (below the limit)",
                                not r.errors)),
        ("project list, keyset first page (big project)", get(f"{pkgs}?{keyset}"),
         under(FIRST_PAGE_MS)),
        ("project list, keyset page at the end (big project)",
         get(f"{pkgs}?{keyset}&id_after={deep_id}"), like(big_first)),
        (group_first, get(group), under(FIRST_PAGE_MS)),
        ("group list, first page (normal group)",
         get(f"/api/v4/groups/{f.normal_group_id}/packages"), under(FIRST_PAGE_MS)),
        ("group list, keyset page at the end", get(f"{group}?{keyset}&id_after={deep_id}"),
         like(group_first)),
        (files_first, get(files_url), under(FIRST_PAGE_MS)),
        (f"package files, offset page {last_files}", get(f"{files_url}?page={last_files}"),
         bounded),
        ("package files, keyset page at the end",
         get(f"{files_url}?pagination=keyset&sort=asc&id_after={file_deep}"), like(files_first)),
        ("duplicate check (refused upload, 400)",
         http.expect("PUT", ops.file_path(dup["project_id"], dup["name"], dup["version"],
                                          dup["file_name"]), 400, b"x" * 1024), info),
        (DELETE_OP, _deletes(http, doomed), info),
        # One at a time, a new version each: what an upload costs without waiting for others.
        (UPLOAD_OP, _each(http, "PUT", [
            ops.file_path(f.big_project_id, "bench-one", f"1.{i}", "f.bin")
            for i in range(count + 1)], 201, b"u" * 1024), info),
    ]
    return [(name, one) for name, one, _ in table], {name: judge for name, _, judge in table}


def _each(http: ops.Http, method: str, paths: list[str], status: int,
          body: bytes | None = None, offset: int = 1):
    """One request per path in turn (call -1 is the warm-up, on the first path)."""
    async def one(i: int) -> str | None:
        return await http.expect(method, paths[(i + offset) % len(paths)], status, body)(i)
    return one


def _deletes(http: ops.Http, packages: list[tuple[int, int]]):
    """DELETE each (project, package) in turn."""
    async def one(i: int) -> str | None:
        project, pkg = packages[(i + 1) % len(packages)]
        return await http.expect("DELETE", f"/api/v4/projects/{project}/packages/{pkg}",
                                 204)(i)
    return one


async def collect_plans(run: Run, conn: asyncpg.Connection) -> None:
    for query in await plans.hot_queries(conn, run.f):
        text = await plans.explain(conn, query)
        plan_json = await plans.explain(conn, query, fmt="JSON")
        seq = plans.sequential_scans(plan_json)
        run.plan_text[query.name] = text + (f"\n-- sequential scans of {', '.join(seq)}"
                                            if seq else "")
        if query.name in ("sweeper scan", "deletion worker claim"):
            table = "pending_uploads" if query.name == "sweeper scan" else "object_deletions"
            ok = plans.touches_only_due_rows(plan_json, table)
            name = ("sweeper scan (stale pending uploads)" if table == "pending_uploads"
                    else "deletion worker claim (due entries)")
            run.targets[name] = ("only due rows read (plan)", ok)


def report(run: Run, machine: str, fill_seconds: float) -> str:
    s = run.f.sizes
    lines = [
        "### Metadata at scale: PostgreSQL behind a serving gateway",
        "",
        f"Command: `python -m benchmarks.metadata {' '.join(sys.argv[1:])}`. {machine}. "
        f"Fill: {s.groups:,} groups, {s.projects:,} projects, {s.packages:,} packages, "
        f"{s.files:,} files ({s.big_projects} projects of {s.big_project_files:,} files, one "
        f"package of {s.big_package_files:,}), {s.pending:,} pending uploads "
        f"({s.stale_pending:,} stale), {s.deletions:,} queued deletions "
        f"({s.due_deletions:,} due), in {fill_seconds:.0f} s. One `gateway serve` process, "
        "moto for presigning; requests one at a time unless said otherwise, as a Maintainer "
        "of every group (not an administrator).",
        "",
        "| operation | n | errors | at once | p50 ms | p99 ms | statements | DB ms | target "
        "| met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in run.results:
        target, met = run.targets[r.name]
        verdict = "—" if met is None else ("yes" if met else "**not met**")
        stmts = "—" if r.statements is None else f"{r.statements:.1f}"
        db_ms = "—" if r.db_ms is None else f"{r.db_ms:.2f}"
        lines.append(f"| {r.name} | {len(r.latencies)} | {len(r.errors)} | {r.concurrency} | "
                     f"{r.p50:.2f} | "
                     f"{r.p99:.2f} | {stmts} | {db_ms} | {target} | {verdict} |")
    slow = [r for r in run.results if run.targets[r.name][1] is False]
    lines += ["", "Statements: pg_stat_statements' calls per operation, each one a round trip "
              "(BEGIN and COMMIT included); DB ms: their execution time in PostgreSQL, summed "
              "per operation.", "", "| table | rows | heap MiB | indexes MiB | bytes per row |",
              "|---|---|---|---|---|"]
    for table, rows, heap, index in run.sizes:
        per_row = (heap + index) / rows if rows > 0 else float("nan")
        lines.append(f"| {table} | {rows:,} | {heap / 2**20:,.0f} | {index / 2**20:,.0f} | "
                     f"{per_row:,.0f} |")
    lines.append("")
    lines += ["Each index of migrations 0002 and 0006 against the plan without it (dropped, and "
              "the index it replaced rebuilt, in a transaction rolled back): execution time, and "
              "the most rows one scan of the table read.", "",
              "| index | query | without: ms | rows read | with: ms | rows read |",
              "|---|---|---|---|---|---|"]
    for j in run.justified:
        lines.append(f"| `{j.index}` | {j.query} | {j.without_ms:.2f} | {j.without_rows:,.0f} | "
                     f"{j.with_ms:.2f} | {j.with_rows:,.0f} |")
    lines += ["", "#### Query plans", "", "```"]
    wanted = {"download lookup", "sweeper scan", "deletion worker claim"}
    wanted |= {name for name in run.plan_text if any(
        key in name for r in slow for key in _plan_keys(r.name))}
    for name, text in run.plan_text.items():
        if name in wanted or not slow:
            lines += [f"-- {name}", text, ""]
    lines.append("```")
    return "\n".join(lines)


def _plan_keys(result_name: str) -> list[str]:
    for prefix, keys in (("project list", ["project list"]), ("group list", ["group"]),
                         ("package files", ["package files"]), ("download", ["download"]),
                         ("HEAD", ["download"]), ("delete", ["delete"]),
                         ("duplicate", ["duplicate"])):
        if result_name.startswith(prefix):
            return keys
    return []


async def run_async(args: argparse.Namespace, work: Path, stack: ExitStack) -> str:
    machine = machine_note()
    cluster = start_postgres(work, args.shared_buffers)
    stack.callback(cluster.stop)
    url = cluster.create_database("packgate_metadata")
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        sizes = Sizes.scaled(args.scale)
        log(f"filling {sizes.files:,} files, {sizes.packages:,} packages …")
        filled = await fill(conn, sizes, log)
        log(f"filled in {filled.seconds:.0f} s")
        run = Run(args, url, filled)
        run.sizes = await ops.table_sizes(conn, (*plans.BIG_TABLES, "projects", "namespaces"))
        # The scans first, while the due rows are there; then they are put off, so the
        # gateway's own worker does not spend the run deleting a million absent objects.
        for result in await ops.measure_scans(conn, args.requests):
            run.judge(result, "—" if result.name.startswith("baseline") else
                      "only due rows read (plan)", None)
        await collect_plans(run, conn)
        run.justified = await plans.justify(conn, filled)
        await conn.execute("UPDATE object_deletions SET next_attempt_at = now() + interval "
                           "'1 day' WHERE next_attempt_at <= now()")
        settings = Settings(database_url=url, s3_bucket=h.BUCKET, instance_id="bench")
        run.judge(await ops.measure_transaction_baseline(settings, args.requests,
                                                         args.concurrency), "—", None)
        run.under(await ops.measure_commits(settings, filled, args.requests, args.concurrency),
                  COMMIT_MS)
        backend = h.start_backend("moto", work, rclone_buffer_limit=0)
        stack.callback(backend.server.stop)
        db = h.Database(cluster, url, filled.token, filled.big_project_id)
        gw = h.start_gateway(db, work, "metadata", backend=backend)
        stack.callback(gw.stop)
        await measure_http(run, gw.url, conn)
        return report(run, machine, filled.seconds)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with ExitStack() as stack:
        if args.workdir:
            work = args.workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(tempfile.mkdtemp(prefix="packgate-metadata-"))
            stack.callback(shutil.rmtree, work, True)
        log(f"scratch folder {work}")
        text = asyncio.run(run_async(args, work, stack))
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
