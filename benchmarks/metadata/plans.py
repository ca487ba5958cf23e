"""The hot queries of the metadata benchmark by name, with representative arguments, and what
their plans say: EXPLAIN (ANALYZE, BUFFERS) text for the report, and the scans of a JSON plan
for judging (sequential scans, rows read and thrown away by a filter).

The queries are the gateway's own named SQL (``gateway.db.packages``), never copies, so a plan
shown here is the plan the gateway gets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg

from benchmarks.metadata.fill import Filled
from gateway.db import packages as q
from gateway.db.identity import groups as group_queries

BIG_TABLES = ("packages", "package_files", "object_deletions", "pending_uploads")
STALE_SECONDS = 900.0  # GATEWAY_STALE_UPLOAD_SECONDS's default


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    sql: str
    args: tuple[object, ...]
    writes: bool = False  # run in a transaction that is rolled back


@dataclass(frozen=True, slots=True)
class Scan:
    node: str
    relation: str | None
    index: str | None
    rows_removed: int
    rows: float  # rows it returned per loop (EXPLAIN ANALYZE only; else the estimate)


def _list_args(project_ids: list[int]) -> tuple[object, ...]:
    return (project_ids, None, None, list(q.DISPLAYABLE_STATUSES), None)


async def hot_queries(conn: asyncpg.Connection, f: Filled) -> list[Query]:
    """Every query the measured operations run on the big tables, with arguments of the fill."""
    sample = await conn.fetchrow("""
        SELECT p.project_id, p.name, p.version, pf.file_name FROM package_files pf
        JOIN packages p ON p.id = pf.package_id WHERE pf.package_id = $1 LIMIT 1
    """, f.big_package_id + 4)
    group_ids = await group_queries.group_and_descendant_ids(conn, f.big_group_id)
    big_group_projects = [r["id"] for r in await conn.fetch(
        "SELECT id FROM projects WHERE namespace_id = ANY($1::bigint[])", group_ids)]
    big = [f.big_project_id]
    count = q.COUNT_PACKAGES
    first = q.package_page_query("created_at", "asc")
    one = q.package_page_query("created_at", "asc", one=True)  # a project's own list
    keyset = q.package_page_query("id", "asc", keyset=True)
    deep_keyset = await conn.fetchval(
        "SELECT id FROM packages WHERE project_id = $1 ORDER BY id DESC OFFSET 25 LIMIT 1",
        f.big_project_id)
    return [
        Query("download lookup", q.FILE_FOR_CALLER_BY_ID,
              (sample["project_id"], f.user_id, sample["name"], sample["version"],
               list(q.INSTALLABLE_STATUSES), sample["file_name"])),
        Query("project list: count", count, (*_list_args(big), 10_001)),
        Query("project list: first page", one, (*_list_args(big), 20, 20, 0)),
        Query("project list: deep offset page", one,
              (*_list_args(big), 50_000, 20, 49_980)),
        Query("project list: keyset first page", keyset,
              (*_list_args(big), 21, 21, 0, 0)),
        Query("project list: keyset deep page", keyset,
              (*_list_args(big), 21, 21, 0, deep_keyset)),
        Query("group projects for caller", q.GROUP_PROJECTS_FOR_CALLER, (group_ids, f.user_id)),
        Query("group list: count", count, (*_list_args(big_group_projects), 10_001)),
        Query("group list: first page", first,
              (*_list_args(big_group_projects), 20, 20, 0)),
        Query("group list: keyset first page", keyset,
              (*_list_args(big_group_projects), 21, 21, 0, 0)),
        Query("group list: keyset deep page", keyset,
              (*_list_args(big_group_projects), 21, 21, 0, deep_keyset)),
        Query("package files: count", q.COUNT_PACKAGE_FILES, (f.big_package_id, 10_001)),
        Query("package files: first page", q.package_files_page_query("id", "asc"),
              (f.big_package_id, 20, 0)),
        Query("package files: deep offset page", q.package_files_page_query("id", "asc"),
              (f.big_package_id, 20, 19_980)),
        Query("package files: keyset page", q.PACKAGE_FILES_AFTER,
              (f.big_package_id, 21, 0)),
        Query("duplicate check: the upload's target", q.UPLOAD_TARGET,
              (sample["project_id"], sample["name"], sample["version"],
               sample["file_name"])),
        Query("sweeper scan", q.STALE_PENDING_UPLOADS, (STALE_SECONDS, 500)),
        Query("deletion worker claim", q.CLAIM_OBJECT_DELETIONS, (100,), writes=True),
        Query("deletion worker: next due", q.NEXT_OBJECT_DELETION_DUE, ()),
        Query("delete package (cascade, queue)", q.DELETE_PACKAGE, (f.big_package_id + 8,),
              writes=True),
    ]


async def explain(conn: asyncpg.Connection, query: Query, *, analyze: bool = True,
                  fmt: str = "TEXT", generic: bool = False) -> str:
    """The plan of ``query``; writes are rolled back. ``generic``: the plan PostgreSQL would
    cache for a prepared statement after its first executions (parameters unknown)."""
    options = f"ANALYZE, BUFFERS, FORMAT {fmt}" if analyze else f"FORMAT {fmt}"
    tx = conn.transaction()
    await tx.start()
    try:
        if generic:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await conn.fetch(f"EXPLAIN ({options}) {query.sql}", *query.args)
    finally:
        await tx.rollback()
    if fmt == "JSON":
        value = rows[0][0]
        return value if isinstance(value, str) else json.dumps(value)
    return "\n".join(r[0] for r in rows)


def scans(plan_json: str) -> list[Scan]:
    """Every scan node of a JSON plan (sequential, index, bitmap), with its relation."""
    def walk(node: dict) -> Iterator[Scan]:
        kind = node.get("Node Type", "")
        if "Scan" in kind:
            yield Scan(kind, node.get("Relation Name"), node.get("Index Name"),
                       int(node.get("Rows Removed by Filter", 0))
                       + int(node.get("Rows Removed by Index Recheck", 0)),
                       float(node.get("Actual Rows", node.get("Plan Rows", 0))))
        for child in node.get("Plans", []):
            yield from walk(child)

    (top,) = json.loads(plan_json)
    return list(walk(top["Plan"]))


def sequential_scans(plan_json: str, tables: tuple[str, ...] = BIG_TABLES) -> list[str]:
    return [s.relation for s in scans(plan_json) if s.node == "Seq Scan" and s.relation in tables]


def rows_read(plan_json: str, table: str) -> float:
    """The most rows any one scan of ``table`` read in one loop: returned, or thrown away by
    its filter."""
    return max((s.rows + s.rows_removed for s in scans(plan_json) if s.relation == table),
               default=0.0)


def touches_only_due_rows(plan_json: str, table: str) -> bool:
    """True when every scan of ``table`` goes through an index (directly or as a bitmap) and no
    row read was thrown away by a filter: the scan reads the due rows and nothing else."""
    found = [s for s in scans(plan_json) if s.relation == table]
    return bool(found) and all(
        s.node in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan") and s.rows_removed == 0
        for s in found)


# Each index of migrations 0002 and 0006, the hot queries it is for, and the index it replaced
# (rebuilt for the comparison), if any.
JUSTIFIED: dict[str, tuple[tuple[str, ...], str | None]] = {
    "packages_project_created_idx": (
        ("project list: count", "project list: first page", "group list: first page"), None),
    "packages_project_id_idx": (
        ("project list: keyset first page", "group list: keyset first page"),
        "CREATE INDEX packages_project_idx ON packages (project_id, id)"),
    "package_files_package_id_idx": (
        ("package files: count", "package files: first page", "package files: keyset page"),
        None),
    "pending_uploads_heartbeat_idx": (("sweeper scan",), None),
    "object_deletions_due_id_idx": (
        ("deletion worker claim",),
        "CREATE INDEX object_deletions_due_idx ON object_deletions (next_attempt_at)"),
}


@dataclass(frozen=True, slots=True)
class Justification:
    index: str
    query: str
    without_ms: float
    without_rows: float
    with_ms: float
    with_rows: float


def _measure(plan_json: str, table: str) -> tuple[float, float]:
    (top,) = json.loads(plan_json)
    return float(top["Execution Time"]), rows_read(plan_json, table)


def _table_of(sql: str) -> str:
    for table in ("package_files", "pending_uploads", "object_deletions", "packages"):
        if table in sql:
            return table
    return "packages"


async def justify(conn: asyncpg.Connection, f: Filled) -> list[Justification]:
    """Each query of ``JUSTIFIED`` planned and run with its index and without it (dropped, and
    the index it replaced rebuilt, inside a transaction that is rolled back)."""
    queries = {q.name: q for q in await hot_queries(conn, f)}
    out = []
    for index, (names, replaced) in JUSTIFIED.items():
        chosen = [queries[n] for n in names if n in queries]
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(f'DROP INDEX "{index}"')
            if replaced:
                await conn.execute(replaced)
            without = {}
            for query in chosen:
                sql = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query.sql}"
                await conn.fetch(sql, *query.args)  # warm: the second run is measured
                rows = await conn.fetch(sql, *query.args)
                without[query.name] = _measure(_json(rows), _table_of(query.sql))
        finally:
            await tx.rollback()
        for query in chosen:
            await explain(conn, query, fmt="JSON")  # warm, as above
            plan = await explain(conn, query, fmt="JSON")
            with_ms, with_rows = _measure(plan, _table_of(query.sql))
            out.append(Justification(index, query.name, *without[query.name], with_ms,
                                     with_rows))
    return out


def _json(rows: list[asyncpg.Record]) -> str:
    value = rows[0][0]
    return value if isinstance(value, str) else json.dumps(value)
