"""The whole package path through nginx, 3 gateways and PgBouncer in transaction pooling."""

from __future__ import annotations

import asyncio
import os
import subprocess

import aiohttp
import asyncpg
import pytest

from gateway import config
from gateway.devtools.cluster import LISTEN_URL_VARIABLE, Cluster
from gateway.devtools.dev import BUCKET
from gateway.devtools.postgres import find_pg_binary
from tests.cluster.conftest import Api, committed_sha256s, sha256, unique
from tests.faults.checks import assert_consistent


async def test_upload_download_head_list_and_delete_through_the_cluster(
    cluster: Cluster, api: Api, http: aiohttp.ClientSession, db: asyncpg.Connection, s3
) -> None:
    before = await committed_sha256s(db)
    name, body = unique("path"), os.urandom(3 * 2**20 + 17)
    url = api.file(name, "1.0.0", "tool.bin")

    async with http.put(url + "?select=package_file", data=body, headers=api.auth) as resp:
        assert resp.status == 200
        record = await resp.json()
    assert record["file_sha256"] == sha256(body) and record["size"] == len(body)

    async with http.get(url, headers=api.auth, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["X-Checksum-SHA256"] == sha256(body)
        location = resp.headers["Location"]
    async with http.get(location) as resp:  # straight from S3, as a client follows it
        assert resp.status == 200
        assert await resp.read() == body

    async with http.head(url, headers=api.auth) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(body))
        assert resp.headers["X-Checksum-SHA256"] == sha256(body)

    async with http.get(api.url(f"/projects/{api.project_id}/packages"),
                        params={"package_name": name}, headers=api.auth) as resp:
        assert resp.status == 200
        listed = await resp.json()
    assert [(p["name"], p["version"]) for p in listed] == [(name, "1.0.0")]
    await assert_consistent(db, s3, BUCKET, [*before, sha256(body)])

    package_id = listed[0]["id"]
    async with http.delete(api.url(f"/projects/{api.project_id}/packages/{package_id}"),
                           headers=api.auth) as resp:
        assert resp.status == 204
    async with http.get(url, headers=api.auth, allow_redirects=False) as resp:
        assert resp.status == 404
        assert await resp.json() == {"message": "404 Not found"}
    await assert_consistent(db, s3, BUCKET, before)  # the object is gone from the bucket too


async def test_duplicate_policy_is_enforced_through_the_cluster(
    api: Api, http: aiohttp.ClientSession
) -> None:
    group_path = unique("dup")
    async with http.post(api.url("/groups"), headers=api.auth,
                         data={"name": group_path, "path": group_path}) as resp:
        assert resp.status == 201
        group = await resp.json()
    async with http.post(api.url("/projects"), headers=api.auth,
                         data={"name": "tools", "namespace_id": str(group["id"])}) as resp:
        assert resp.status == 201
        project = await resp.json()
    async with http.put(api.url(f"/groups/{group['id']}/packages/settings"), headers=api.auth,
                        json={"generic_duplicates_allowed": False}) as resp:
        assert resp.status == 200
    url = api.file("app", "2.0.0", "app.tar.gz", project=project["id"])

    async with http.put(url, data=b"first", headers=api.auth) as resp:
        assert resp.status == 201
    # Every gateway sees the policy, whichever answers; racing duplicates store exactly one.
    statuses = []
    for _ in range(3):
        async with http.put(url, data=b"again", headers=api.auth) as resp:
            statuses.append((resp.status, await resp.json()))
    refused = {"message": "400 Bad request - Duplicate package is not allowed"}
    assert statuses == [(400, refused)] * 3


async def test_errors_nginx_makes_itself_are_gitlab_json(cluster: Cluster) -> None:
    # Two Host headers: nginx refuses the request before any gateway sees it.
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
    writer.write(b"GET /api/v4/projects HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/json" in head
    assert body == b'{"message":"400 Bad request"}'


async def test_headers_too_large_for_nginx_get_gitlab_json(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{cluster.url}/api/v4/projects",
                        headers={"X-Big": "x" * 20_000}) as resp:
        assert resp.status == 400
        assert await resp.json() == {"message": "400 Bad request"}


def test_gateways_reach_postgresql_through_pgbouncer_in_transaction_pooling(
    cluster: Cluster,
) -> None:
    assert cluster.pgbouncer is not None
    for instance in cluster.instances:
        assert instance.env["GATEWAY_DATABASE_URL"] == cluster.pgbouncer.database_url("packgate")
        assert instance.env["GATEWAY_DB_PGBOUNCER"] == "true"

    def console(command: str) -> list[list[str]]:
        assert cluster.pgbouncer is not None
        out = subprocess.run(
            [find_pg_binary("psql"), "-X", "-A", "-t", "-F", "\t", "-h", "127.0.0.1", "-p",
             str(cluster.pgbouncer.port), "-U", "postgres", "pgbouncer", "-c", command],
            capture_output=True, text=True, timeout=30, check=True)
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    config = {row[0]: row[1] for row in console("SHOW CONFIG")}
    assert config["pool_mode"] == "transaction"
    # The gateways are PgBouncer's clients (their pools keep connections to it).
    assert any(row[2] == "packgate" for row in console("SHOW CLIENTS"))


def test_gateways_listen_for_notifications_straight_on_postgresql(cluster: Cluster) -> None:
    if LISTEN_URL_VARIABLE not in config.ENV_VARIABLES:
        pytest.skip("this gateway has no LISTEN connection of its own")
    # LISTEN cannot work through transaction pooling: that one DSN bypasses PgBouncer.
    for instance in cluster.instances:
        assert instance.env[LISTEN_URL_VARIABLE] == cluster.database_url
