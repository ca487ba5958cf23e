"""Deletion frees the bucket: deleted files' objects leave S3 (checked through the S3 API),
also when S3 fails meanwhile; delete by path on the generic URLs."""

from __future__ import annotations

import os
from dataclasses import replace

import boto3
import pytest
from botocore.config import Config

from gateway import keys
from gateway.app import create_app
from gateway.devtools.s3servers import MotoServer, RcloneS3Server
from tests.conftest import s3_client
from tests.package_helpers import bucket_keys, eventually, generic_url, hdr

PACKAGES = "/api/v4/projects/{pid}/packages"


async def upload(client, world, body: bytes | None = None, **where) -> None:
    # Distinct bytes by default: identical ones would share one object (deduplication).
    resp = await client.put(generic_url(world.project_id, **where),
                            data=body if body is not None else os.urandom(16),
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 201, await resp.text()


async def keys_of(world, **where) -> set[str]:
    rows = await world.conn.fetch(
        "SELECT f.object_key FROM package_files f JOIN packages p ON p.id = f.package_id "
        "WHERE p.name = $1", where.get("name", "pkg"))
    return {r["object_key"] for r in rows}


async def queue_empty(world) -> bool:
    return await world.conn.fetchval("SELECT count(*) FROM object_deletions") == 0


# --- through the Packages API ------------------------------------------------------------------


async def test_deleting_a_package_removes_its_objects_from_the_bucket(client, world, s3,
                                                                      settings) -> None:
    await upload(client, world, file="a.txt")
    await upload(client, world, file="b.txt")
    await upload(client, world, name="kept")
    doomed = await keys_of(world)
    package_id = await world.conn.fetchval("SELECT id FROM packages WHERE name = 'pkg'")
    resp = await client.delete(PACKAGES.format(pid=world.project_id) + f"/{package_id}",
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 204
    await eventually(lambda: not doomed & bucket_keys(s3, settings.s3_bucket),
                     "objects of the deleted package gone")
    assert bucket_keys(s3, settings.s3_bucket) == await keys_of(world, name="kept")
    await eventually(lambda: queue_empty(world), "queue drained")


async def test_deleting_a_file_removes_only_its_object(client, world, s3, settings) -> None:
    await upload(client, world, file="a.txt")
    await upload(client, world, file="b.txt")
    row = await world.conn.fetchrow(
        "SELECT id, package_id, object_key FROM package_files WHERE file_name = 'a.txt'")
    resp = await client.delete(
        PACKAGES.format(pid=world.project_id) + f"/{row['package_id']}/package_files/{row['id']}",
        headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 204
    await eventually(lambda: row["object_key"] not in bucket_keys(s3, settings.s3_bucket),
                     "the file's object gone")
    assert bucket_keys(s3, settings.s3_bucket) == await keys_of(world)


async def test_deleting_the_newest_duplicate_serves_the_previous_one(client, world) -> None:
    await upload(client, world, b"old")
    await upload(client, world, b"new")
    newest = await world.conn.fetchrow(
        "SELECT id, package_id FROM package_files ORDER BY id DESC LIMIT 1")
    token = hdr(world.tokens["maintainer"])
    resp = await client.delete(
        PACKAGES.format(pid=world.project_id)
        + f"/{newest['package_id']}/package_files/{newest['id']}", headers=token)
    assert resp.status == 204
    got = await client.get(generic_url(world.project_id), headers=token)
    assert await got.read() == b"old"


async def test_deleting_a_project_queues_and_removes_its_objects(client, world, s3,
                                                                 settings) -> None:
    await upload(client, world)
    assert bucket_keys(s3, settings.s3_bucket)
    await world.conn.execute("DELETE FROM projects WHERE id = $1", world.project_id)
    client.server.app[keys.deletions].wake()
    await eventually(lambda: not bucket_keys(s3, settings.s3_bucket), "bucket emptied")


# --- delete by path ----------------------------------------------------------------------------


async def test_delete_by_file_path_removes_every_upload_of_it(client, world, s3,
                                                              settings) -> None:
    await upload(client, world, b"one")
    await upload(client, world, b"two")
    await upload(client, world, file="other.txt")
    doomed = await world.conn.fetch(
        "SELECT object_key FROM package_files WHERE file_name = 'file.txt'")
    token = hdr(world.tokens["maintainer"])
    resp = await client.delete(generic_url(world.project_id), headers=token)
    assert resp.status == 204
    assert (await client.get(generic_url(world.project_id), headers=token)).status == 404
    assert (await client.get(generic_url(world.project_id, file="other.txt"), headers=token,
                             allow_redirects=False)).status == 302
    await eventually(
        lambda: not {r["object_key"] for r in doomed} & bucket_keys(s3, settings.s3_bucket),
        "both uploads' objects gone")


async def test_delete_by_sub_path_names_the_stored_file(client, world) -> None:
    await upload(client, world, file="dir/a.txt")
    token = hdr(world.tokens["maintainer"])
    assert (await client.delete(generic_url(world.project_id, file="a.txt"),
                                headers=token)).status == 404
    assert (await client.delete(generic_url(world.project_id, file="dir/a.txt"),
                                headers=token)).status == 204


async def test_delete_by_version_path_removes_the_package(client, world, s3, settings) -> None:
    await upload(client, world, file="a.txt")
    await upload(client, world, file="b.txt")
    token = hdr(world.tokens["maintainer"])
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/packages/generic/pkg/1.0.0",
                               headers=token)
    assert resp.status == 204
    assert await world.conn.fetchval("SELECT count(*) FROM packages") == 0
    await eventually(lambda: not bucket_keys(s3, settings.s3_bucket), "bucket emptied")


async def test_delete_by_path_of_hidden_package_works(client, world) -> None:
    resp = await client.put(generic_url(world.project_id) + "?status=hidden", data=b"x",
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/packages/generic/pkg/1.0.0",
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 204


async def test_delete_by_path_of_missing_file_is_not_found(client, world) -> None:
    await upload(client, world)
    resp = await client.delete(generic_url(world.project_id, file="nope.txt"),
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}


async def test_delete_by_path_needs_maintainer(client, world) -> None:
    await upload(client, world)
    resp = await client.delete(generic_url(world.project_id),
                               headers=hdr(world.tokens["developer"]))
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden"}


async def test_delete_by_path_anonymous_is_401(client, world) -> None:
    resp = await client.delete(generic_url(world.project_id))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="GitLab Packages Registry"'


async def test_delete_by_path_validates_names(client, world) -> None:
    resp = await client.delete(generic_url(world.project_id, file="~bad"),
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "file_name is invalid"}


async def test_delete_by_path_with_one_segment_is_no_route(client, world) -> None:
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/packages/generic/pkg",
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 404
    assert await resp.json() == {"error": "404 Not Found"}


# --- S3 failing during deletion -----------------------------------------------------------------


async def _gateway_on(aiohttp_client, settings, endpoint: str, **s3_settings):
    fragile = replace(settings, s3_endpoint_url=endpoint, s3_read_timeout=1.0,
                      s3_connect_timeout=1.0, s3_max_attempts=1, **s3_settings)
    client = await aiohttp_client(create_app(fragile))
    worker = client.server.app[keys.deletions]
    worker.first_backoff, worker.max_backoff = 0.2, 1.0  # retry often, for a short test
    return client


async def _failed_attempt(world) -> bool:
    return await world.conn.fetchval(
        "SELECT count(*) FROM object_deletions WHERE attempts > 0 AND last_error IS NOT NULL"
    ) == 1


async def test_deletion_retried_until_gone_after_s3_stops_answering(aiohttp_client, settings,
                                                                     world) -> None:
    with MotoServer() as moto:
        s3 = s3_client(moto.endpoint_url)
        s3.create_bucket(Bucket=settings.s3_bucket)
        client = await _gateway_on(aiohttp_client, settings, moto.endpoint_url)
        await upload(client, world)
        (key,) = await keys_of(world)
        moto.pause()  # S3 stopped: requests hang, then time out
        try:
            resp = await client.delete(generic_url(world.project_id),
                                       headers=hdr(world.tokens["maintainer"]))
            assert resp.status == 204
            await eventually(lambda: _failed_attempt(world), "a failed delete recorded")
        finally:
            moto.resume()
        await eventually(lambda: queue_empty(world), "queue drained after S3 came back")
        assert key not in bucket_keys(s3, settings.s3_bucket)


@pytest.mark.timeout(120)
async def test_deletion_retried_until_gone_after_s3_restarts(aiohttp_client, settings, world,
                                                             tmp_path) -> None:
    # rclone keeps objects as files, so a stopped and restarted server still has them.
    server = RcloneS3Server(tmp_path / "s3", "AKIDLOCAL", "secret-local")
    with server:
        client_s3 = _rclone_client(server)
        client_s3.create_bucket(Bucket=settings.s3_bucket)
        client = await _gateway_on(aiohttp_client, settings, server.endpoint_url,
                                   s3_access_key_id="AKIDLOCAL",
                                   s3_secret_access_key="secret-local")
        await upload(client, world)
        (key,) = await keys_of(world)
        server.stop()
        resp = await client.delete(generic_url(world.project_id),
                                   headers=hdr(world.tokens["maintainer"]))
        assert resp.status == 204
        await eventually(lambda: _failed_attempt(world), "a failed delete recorded")
        assert (tmp_path / "s3" / settings.s3_bucket / key).exists()  # still there, on disk
        server.start()
        await eventually(lambda: queue_empty(world), "queue drained after S3 came back")
        assert key not in bucket_keys(client_s3, settings.s3_bucket)


def _rclone_client(server: RcloneS3Server):
    return boto3.client(
        "s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


async def test_worker_survives_and_drains_a_backlog(client, world, s3, settings) -> None:
    for i in range(5):
        await upload(client, world, file=f"f{i}.txt")
    worker = client.server.app[keys.deletions]
    worker.batch = 2  # several batches in one wake-up
    await world.conn.execute("DELETE FROM packages")
    worker.wake()
    await eventually(lambda: queue_empty(world), "backlog drained")
    assert not bucket_keys(s3, settings.s3_bucket)
