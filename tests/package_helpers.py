"""Arranging packages for the Packages API, duplicate and deletion tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import asyncpg

from gateway.db import packages as q

GENERIC_URL = "/api/v4/projects/{pid}/packages/generic/{name}/{version}/{file}"


def generic_url(pid: object, name: str = "pkg", version: str = "1.0.0",
                file: str = "file.txt") -> str:
    return GENERIC_URL.format(pid=pid, name=name, version=version, file=file)


def hdr(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


async def insert_package(
    conn: asyncpg.Connection, project_id: int, name: str, version: str, *,
    status: str = "default", files: tuple[str, ...] = (), package_type: int = q.GENERIC,
) -> asyncpg.Record:
    """A package row (and file rows with made-up object keys) without touching the bucket:
    for list tests, where only rows matter."""
    pkg = await q.insert_package(conn, project_id, name, version, q.STATUS[status], None)
    if package_type != q.GENERIC:
        await conn.execute("UPDATE packages SET package_type = $2 WHERE id = $1",
                           pkg.id, package_type)
    for file_name in files:
        await q.insert_package_file(
            conn, pkg.id, project_id, file_name, 3, "0" * 32, "0" * 40, "0" * 64,
            f"test/{uuid.uuid4().hex}",
        )
    return await conn.fetchrow("SELECT * FROM packages WHERE id = $1", pkg.id)


async def subgroup(conn: asyncpg.Connection, parent_path: str, path: str) -> int:
    parent = await conn.fetchrow("SELECT id, full_path FROM namespaces WHERE full_path = $1",
                                 parent_path)
    return await conn.fetchval(
        "INSERT INTO namespaces (kind, name, path, full_path, parent_id) "
        "VALUES ('group', $1, $1, $2, $3) RETURNING id",
        path, f"{parent['full_path']}/{path}", parent["id"],
    )


async def project_in(conn: asyncpg.Connection, namespace_id: int, path: str,
                     visibility: str = "private") -> int:
    return await conn.fetchval(
        "INSERT INTO projects (namespace_id, name, path, visibility) VALUES ($1, $2, $2, $3) "
        "RETURNING id",
        namespace_id, path, visibility,
    )


async def group_member(conn: asyncpg.Connection, group_path: str, username: str,
                       level: int) -> None:
    await conn.execute(
        "INSERT INTO group_members (group_id, user_id, access_level) "
        "SELECT n.id, u.id, $3 FROM namespaces n, users u "
        "WHERE n.full_path = $1 AND u.username = $2",
        group_path, username, level,
    )


async def eventually(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait until ``check()`` (sync or async) is truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


def bucket_keys(s3, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


async def status_before_body(client, url: str, headers: dict[str, str], length: int) -> bytes:
    """The status line a ``PUT`` with ``Expect: 100-continue`` gets before it sends its body
    (a refusal comes instead of ``100 Continue``)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"PUT {url} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {length}\r\n"
                 "Expect: 100-continue\r\n\r\n".encode())
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
