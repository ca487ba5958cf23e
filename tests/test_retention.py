"""Retention policies: each rule, hidden and protected packages, the preview, a run deleting
exactly what the preview listed while uploads go on into the same names, the command, and the
periodic runner's leader lock."""

from __future__ import annotations

import asyncio
import os

import pytest

from gateway.db.pool import Database
from gateway.governance import retention
from tests.conftest import World, start_gateway
from tests.package_helpers import bucket_keys, generic_url, hdr
from tests.test_cli import run_gateway

POLICY = "/api/v4/projects/{pid}/packages/retention"


async def set_policy(client, world: World, **fields) -> dict:
    resp = await client.put(POLICY.format(pid=world.project_id), json=fields,
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def upload(client, world: World, name: str, version: str, file: str = "f.bin",
                 status: str | None = None) -> None:
    url = generic_url(world.project_id, name=name, version=version, file=file)
    if status:
        url += f"?status={status}"
    resp = await client.put(url, data=os.urandom(100), headers=hdr(world.tokens["developer"]))
    assert resp.status == 201, await resp.text()


async def preview(client, world: World) -> dict:
    resp = await client.get(POLICY.format(pid=world.project_id) + "/preview",
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def run(client, world: World, as_of: str | None = None) -> dict:
    resp = await client.post(POLICY.format(pid=world.project_id) + "/run",
                             json={"as_of": as_of} if as_of else {},
                             headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def versions(world: World, name: str = "app") -> list[str]:
    return [r["version"] for r in await world.conn.fetch(
        "SELECT version FROM packages WHERE name = $1 ORDER BY id", name)]


async def age(world: World, days: int, *, name: str, version: str) -> None:
    await world.conn.execute(
        "UPDATE packages SET created_at = now() - make_interval(days => $3)"
        " WHERE name = $1 AND version = $2", name, version, days)
    await world.conn.execute(
        "UPDATE package_files f SET created_at = now() - make_interval(days => $3)"
        " FROM packages p WHERE p.id = f.package_id AND p.name = $1 AND p.version = $2",
        name, version, days)


async def test_fresh_project_has_no_rules(client, world: World) -> None:
    resp = await client.get(POLICY.format(pid=world.project_id),
                            headers=hdr(world.tokens["maintainer"]))
    assert await resp.json() == {"keep_n_latest": None, "name_regex": None,
                                 "delete_not_downloaded_days": None,
                                 "delete_older_than_days": None, "include_hidden": False}
    assert (await preview(client, world))["items"] == []


async def test_keep_n_latest_deletes_older_versions_of_each_name(client, world: World,
                                                                s3, bucket) -> None:
    for v in ("1", "2", "3", "4"):
        await upload(client, world, "app", v)
    await upload(client, world, "lib", "1")
    await set_policy(client, world, keep_n_latest=2)
    planned = await preview(client, world)
    assert [(i["package_version"], i["reason"]) for i in planned["items"]] == [
        ("1", "keep_n_latest"), ("2", "keep_n_latest")]
    done = await run(client, world)
    assert done["count"] == 2 and done["bytes_freed"] == 200
    assert await versions(world) == ["3", "4"]
    assert await versions(world, "lib") == ["1"]
    # The objects leave the bucket through the deletion queue.
    for _ in range(100):
        if len(bucket_keys(s3, bucket)) == 3:
            break
        await asyncio.sleep(0.1)
    assert len(bucket_keys(s3, bucket)) == 3


async def test_name_regex_limits_keep_n_to_matching_names(client, world: World) -> None:
    for name in ("app", "tool"):
        for v in ("1", "2"):
            await upload(client, world, name, v)
    await set_policy(client, world, keep_n_latest=1, name_regex="to+l")
    await run(client, world)
    assert await versions(world, "app") == ["1", "2"]
    assert await versions(world, "tool") == ["2"]


async def test_older_than_deletes_old_versions(client, world: World) -> None:
    await upload(client, world, "app", "old")
    await upload(client, world, "app", "new")
    await age(world, 40, name="app", version="old")
    await set_policy(client, world, delete_older_than_days=30)
    assert [i["reason"] for i in (await preview(client, world))["items"]] == ["older_than"]
    await run(client, world)
    assert await versions(world) == ["new"]


async def test_files_not_downloaded_go_and_downloads_are_recorded(client, world: World) -> None:
    await upload(client, world, "app", "1", "kept.bin")
    await upload(client, world, "app", "1", "gone.bin")
    await age(world, 20, name="app", version="1")
    resp = await client.get(generic_url(world.project_id, name="app", version="1",
                                        file="kept.bin"),
                            headers=hdr(world.tokens["developer"]), allow_redirects=False)
    assert resp.status == 302
    marks = await world.conn.fetch("SELECT file_name, last_downloaded_at FROM package_files")
    assert {r["file_name"]: r["last_downloaded_at"] is not None for r in marks} == {
        "kept.bin": True, "gone.bin": False}
    await set_policy(client, world, delete_not_downloaded_days=10)
    planned = await preview(client, world)
    assert [(i["file_name"], i["reason"]) for i in planned["items"]] == [
        ("gone.bin", "not_downloaded")]
    await run(client, world)
    assert [r["file_name"] for r in await world.conn.fetch("SELECT file_name FROM package_files")
            ] == ["kept.bin"]


async def test_hidden_versions_are_left_alone_unless_included(client, world: World) -> None:
    await upload(client, world, "app", "1", status="hidden")
    await upload(client, world, "app", "2")
    await upload(client, world, "app", "3")
    await set_policy(client, world, keep_n_latest=1)
    assert [i["package_version"] for i in (await preview(client, world))["items"]] == ["2"]
    await set_policy(client, world, include_hidden=True)
    assert [i["package_version"] for i in (await preview(client, world))["items"]] == ["1", "2"]


async def test_names_protected_against_deletion_are_kept(client, world: World) -> None:
    for v in ("1", "2"):
        await upload(client, world, "app", v)
    await world.conn.execute(
        "INSERT INTO package_protection_rules (project_id, package_name_pattern, package_type,"
        " minimum_access_level_for_delete) VALUES ($1, 'ap*', 7, 50)", world.project_id)
    await set_policy(client, world, keep_n_latest=1)
    planned = await preview(client, world)
    assert (planned["items"], planned["protected_versions_kept"]) == ([], 2)


async def test_run_deletes_exactly_the_preview_while_uploads_go_on(client, world: World) -> None:
    """Uploads into the same names after the preview (new versions, and new files in versions
    the preview lists) survive; what the preview listed, and only that, is gone."""
    for v in range(1, 7):
        await upload(client, world, "app", f"{v}")
    await set_policy(client, world, keep_n_latest=2)
    planned = await preview(client, world)
    listed = {i["package_file_id"] for i in planned["items"]}
    assert len(listed) == 4

    async def uploads_meanwhile() -> None:
        for n in range(6):
            await upload(client, world, "app", f"{10 + n}")
            await upload(client, world, "app", "1", f"late-{n}.bin")  # into a listed version

    done, _ = await asyncio.gather(run(client, world, planned["as_of"]), uploads_meanwhile())
    assert {i["package_file_id"] for i in done["items"]} == listed
    remaining = await world.conn.fetch(
        "SELECT f.id, p.version, f.file_name FROM package_files f"
        " JOIN packages p ON p.id = f.package_id")
    assert not listed & {r["id"] for r in remaining}
    assert {(r["version"], r["file_name"]) for r in remaining} >= (
        {("5", "f.bin"), ("6", "f.bin")} | {(f"{10 + n}", "f.bin") for n in range(6)}
        | {("1", f"late-{n}.bin") for n in range(6)})
    assert len(remaining) == 2 + 6 + 6


async def test_policy_changes_are_validated_and_audited(client, world: World) -> None:
    resp = await client.put(POLICY.format(pid=world.project_id),
                            json={"name_regex": "(a", "keep_n_latest": 0},
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 400
    resp = await client.put(POLICY.format(pid=world.project_id), json={"name_regex": "(a"},
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 400
    assert "name_regex" in (await resp.json())["message"]
    await set_policy(client, world, keep_n_latest=3)
    assert await world.conn.fetchval(
        "SELECT count(*) FROM audit_events WHERE event_name = 'package_retention_policy_updated'"
    ) == 1


async def test_command_runs_every_policy_with_progress(client, world: World, settings) -> None:
    for v in ("1", "2", "3"):
        await upload(client, world, "app", v)
    await set_policy(client, world, keep_n_latest=1)
    env = {"GATEWAY_DATABASE_URL": settings.database_url}
    dry = await asyncio.to_thread(run_gateway, "admin", "retention", "run", "--dry-run",
                                  env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"[1/1] project {world.project_id}: 2 item(s)" in dry.stdout
    assert "would delete 2 file(s)" in dry.stdout
    assert await versions(world) == ["1", "2", "3"]
    real = await asyncio.to_thread(run_gateway, "admin", "retention", "run", env=env)
    assert real.returncode == 0, real.stderr
    assert "deleted 2 file(s)" in real.stdout
    assert await versions(world) == ["3"]


async def test_one_instance_at_a_time_holds_the_retention_lock(settings, world: World) -> None:
    async with Database.open(settings) as db, db.transaction() as conn:
        assert await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", 0x72657465)
        report = await retention.run_all(db)
    assert report.busy
    assert "another gateway" in str(report)


@pytest.mark.timeout(120)
async def test_periodic_runner_applies_policies_on_its_own(settings, tmp_path,
                                                           world: World) -> None:
    """Two gateway processes with a one-second interval: the policy is applied (by whichever
    holds the lock), and last_run_at keeps a second round from running it again at once."""
    first = start_gateway(settings, tmp_path, GATEWAY_RETENTION_INTERVAL="1")
    second = start_gateway(settings, tmp_path, GATEWAY_RETENTION_INTERVAL="1")
    try:
        import aiohttp
        async with aiohttp.ClientSession() as http:
            for v in ("1", "2", "3"):
                async with http.put(first.url + generic_url(world.project_id, name="app",
                                                            version=v),
                                    data=b"x", headers=hdr(world.tokens["developer"])) as r:
                    assert r.status == 201
            async with http.put(first.url + POLICY.format(pid=world.project_id),
                                json={"keep_n_latest": 1},
                                headers=hdr(world.tokens["maintainer"])) as r:
                assert r.status == 200
        for _ in range(200):
            if await versions(world) == ["3"]:
                break
            await asyncio.sleep(0.1)
        assert await versions(world) == ["3"]
        assert await world.conn.fetchval(
            "SELECT last_run_at IS NOT NULL FROM package_retention_policies")
    finally:
        first.stop()
        second.stop()
