"""Storage quotas: a project's, a group's (over its subgroups) and the instance default;
refused early from Content-Length and authoritatively at the commit (also for chunked bodies
and under races across two gateways); usage in the project API, the quota API and metrics."""

from __future__ import annotations

import asyncio
import os

import aiohttp

from tests.conftest import World, start_gateway
from tests.package_helpers import (
    bucket_keys,
    generic_url,
    hdr,
    project_in,
    status_before_body,
    subgroup,
)

OVER = {"message": "413 Request Entity Too Large - storage quota exceeded"}


def quota_url(scope: str, ref: object) -> str:
    return f"/api/v4/{scope}/{ref}/packages/quota"


async def set_quota(client, world: World, scope: str, ref: object, **fields) -> dict:
    resp = await client.put(quota_url(scope, ref), json=fields, headers=hdr(world.admin_token))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def put(client, world: World, body: bytes, *, name: str = "pkg", version: str = "1.0.0",
              project_id: int | None = None) -> tuple[int, dict]:
    resp = await client.put(generic_url(project_id or world.project_id, name=name,
                                        version=version, file=f"f{os.urandom(4).hex()}"),
                            data=body, headers=hdr(world.admin_token))
    return resp.status, await resp.json()


async def test_project_quota_refuses_the_upload_that_does_not_fit(client, world: World,
                                                                 s3, bucket) -> None:
    await set_quota(client, world, "projects", world.project_id, max_bytes=100)
    assert (await put(client, world, b"x" * 60))[0] == 201
    assert await put(client, world, b"x" * 41) == (413, OVER)
    assert (await put(client, world, b"x" * 40))[0] == 201
    assert await world.conn.fetchval("SELECT sum(size) FROM package_files") == 100
    assert len(bucket_keys(s3, bucket)) == 2


async def test_chunked_upload_is_refused_at_the_commit_and_leaves_nothing(
    client, world: World, s3, bucket
) -> None:
    await set_quota(client, world, "projects", world.project_id, max_bytes=1000)

    async def body():
        for _ in range(3):
            yield b"y" * 500

    resp = await client.put(generic_url(world.project_id), data=body(),
                            headers=hdr(world.admin_token))
    assert (resp.status, await resp.json()) == (413, OVER)
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 0
    assert await world.conn.fetchval("SELECT count(*) FROM pending_uploads") == 0
    assert bucket_keys(s3, bucket) == set()


async def test_declared_size_is_refused_before_the_body_is_sent(client, world: World) -> None:
    await set_quota(client, world, "projects", world.project_id, max_bytes=1000)
    status_line = await status_before_body(client, generic_url(world.project_id),
                                           hdr(world.admin_token), 5000)
    assert status_line.startswith(b"HTTP/1.1 413")


async def test_file_count_quota(client, world: World) -> None:
    await set_quota(client, world, "projects", world.project_id, max_files=2)
    assert (await put(client, world, b"a"))[0] == 201
    assert (await put(client, world, b"b"))[0] == 201
    assert await put(client, world, b"c") == (413, OVER)


async def test_group_quota_counts_every_project_below_it(client, world: World) -> None:
    acme = await world.conn.fetchval("SELECT id FROM namespaces WHERE full_path = 'acme'")
    sub = await subgroup(world.conn, "acme", "sub")
    deep = await project_in(world.conn, sub, "deep")
    await set_quota(client, world, "groups", "acme", max_bytes=100)
    assert (await put(client, world, b"x" * 70))[0] == 201
    assert await put(client, world, b"x" * 31, project_id=deep) == (413, OVER)
    assert (await put(client, world, b"x" * 30, project_id=deep))[0] == 201
    quota = await (await client.get(quota_url("groups", acme),
                                    headers=hdr(world.admin_token))).json()
    assert (quota["used_bytes"], quota["used_files"]) == (100, 2)


async def test_instance_default_applies_to_projects_without_their_own(
    aiohttp_client, settings, world: World
) -> None:
    from gateway.app import create_app
    client = await aiohttp_client(create_app(settings.with_overrides(packages_quota_bytes=50)))
    assert (await put(client, world, b"x" * 50))[0] == 201
    assert await put(client, world, b"x") == (413, OVER)
    quota = await (await client.get(quota_url("projects", world.project_id),
                                    headers=hdr(world.admin_token))).json()
    assert quota == {"max_bytes": None, "max_files": None, "effective_max_bytes": 50,
                     "effective_max_files": None, "used_bytes": 50, "used_files": 1}
    # A project's own limit replaces the default.
    await set_quota(client, world, "projects", world.project_id, max_bytes=1000)
    assert (await put(client, world, b"x"))[0] == 201


async def test_put_changes_only_the_fields_given_and_null_removes(client, world: World) -> None:
    await set_quota(client, world, "projects", world.project_id, max_bytes=10, max_files=5)
    body = await set_quota(client, world, "projects", world.project_id, max_files=None)
    assert (body["max_bytes"], body["max_files"]) == (10, None)
    resp = await client.put(quota_url("projects", world.project_id), json={"max_bytes": -1},
                            headers=hdr(world.admin_token))
    assert (resp.status, await resp.json()) == (
        400, {"error": "max_bytes does not have a valid value"})
    [event] = await world.conn.fetch(
        "SELECT details FROM audit_events WHERE event_name = 'packages_quota_updated'"
        " ORDER BY id DESC LIMIT 1")
    assert '"max_files_from": 5' in event["details"]


async def test_statistics_packages_size_in_the_project_api(client, world: World) -> None:
    await put(client, world, b"x" * 123)
    resp = await client.get(f"/api/v4/projects/{world.project_id}",
                            params={"statistics": "true"}, headers=hdr(world.tokens["reporter"]))
    stats = (await resp.json())["statistics"]
    assert stats["packages_size"] == 123
    assert stats["storage_size"] == 123
    plain = await (await client.get(f"/api/v4/projects/{world.project_id}",
                                    headers=hdr(world.tokens["reporter"]))).json()
    assert "statistics" not in plain


async def test_metrics_show_usage_and_refusals(client, world: World) -> None:
    await set_quota(client, world, "projects", world.project_id, max_bytes=10)
    await put(client, world, b"x" * 10)
    await put(client, world, b"x")
    text = await (await client.get("/metrics")).text()
    assert 'packgate_quota_refusals_total{scope="project",stage="early"} 1.0' in text
    assert f'packgate_quota_used_bytes{{id="{world.project_id}",scope="project"}} 10.0' in text
    assert "packgate_packages_stored_bytes 10.0" in text


async def test_sixteen_racing_uploads_on_two_gateways_hold_the_quota(
    gateway, world: World, settings, tmp_path, s3,
) -> None:
    """Room for 10 files of 64 KiB; 16 uploads at once, alternating between two gateway
    processes, into 16 different versions (so no version lock serializes them): exactly 10
    are stored and the 6 others answer 413 and leave nothing in the bucket."""
    size = 64 * 1024
    await world.conn.execute("UPDATE projects SET packages_max_bytes = $2 WHERE id = $1",
                             world.project_id, 10 * size)
    second = start_gateway(settings, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            async def upload(i: int) -> int:
                base = (gateway, second)[i % 2].url
                url = base + generic_url(world.project_id, version=f"1.{i}")
                async with http.put(url, data=os.urandom(size),
                                    headers=hdr(world.tokens["developer"])) as r:
                    await r.read()
                    return r.status

            statuses = await asyncio.wait_for(asyncio.gather(*map(upload, range(16))), 120)
    finally:
        second.stop()
    assert sorted(statuses) == [201] * 10 + [413] * 6
    stored = await world.conn.fetch("SELECT object_key, size FROM package_files")
    assert sum(r["size"] for r in stored) == 10 * size
    assert bucket_keys(s3, settings.s3_bucket) == {r["object_key"] for r in stored}
