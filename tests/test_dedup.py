"""Content-addressed deduplication: identical bytes are stored once, referenced by every file
row that holds them; the object goes with its last reference; migration 0008 backfills."""

from __future__ import annotations

import asyncio
import hashlib
import os

import asyncpg

from gateway.db.migrate import load_migrations, migrate
from tests.conftest import World
from tests.package_helpers import bucket_keys, eventually, generic_url, hdr
from tests.test_migrations import new_database  # noqa: F401  (fixture)

PACKAGES = "/api/v4/projects/{pid}/packages"


async def put(client, world: World, body: bytes, version: str = "1.0.0",
              file: str = "file.txt") -> None:
    resp = await client.put(generic_url(world.project_id, version=version, file=file),
                            data=body, headers=hdr(world.tokens["developer"]))
    assert resp.status == 201, await resp.text()


async def blobs(world: World) -> list[asyncpg.Record]:
    return await world.conn.fetch("SELECT object_key, refcount FROM blobs ORDER BY id")


async def objects_settle_to(s3, settings, keys: set[str]) -> None:
    await eventually(lambda: bucket_keys(s3, settings.s3_bucket) == keys,
                     f"the bucket holds exactly {len(keys)} object(s)")


async def test_identical_bytes_are_stored_once(client, world: World, s3, settings) -> None:
    body = os.urandom(70_000)
    await put(client, world, body, file="a.bin")
    await put(client, world, body, version="2.0.0", file="b.bin")
    rows = await world.conn.fetch("SELECT object_key FROM package_files")
    assert len(rows) == 2 and rows[0]["object_key"] == rows[1]["object_key"]
    assert [dict(b) for b in await blobs(world)] == [
        {"object_key": rows[0]["object_key"], "refcount": 2}
    ]
    await objects_settle_to(s3, settings, {rows[0]["object_key"]})


async def test_two_identical_uploads_at_once_make_one_blob_and_two_rows(
    client, world: World, s3, settings
) -> None:
    body = os.urandom(9 * 1024 * 1024)  # multipart: both are streaming at the same time
    await asyncio.gather(put(client, world, body, version="1.0.0"),
                         put(client, world, body, version="2.0.0"))
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 2
    [blob] = await blobs(world)
    assert blob["refcount"] == 2
    await objects_settle_to(s3, settings, {blob["object_key"]})


async def test_deleting_one_reference_keeps_the_bytes_deleting_both_frees_them(
    client, world: World, s3, settings
) -> None:
    body = os.urandom(1000)
    await put(client, world, body, version="1.0.0")
    await put(client, world, body, version="2.0.0")
    [blob] = await blobs(world)
    resp = await client.delete(generic_url(world.project_id, version="1.0.0"),
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 204
    assert [b["refcount"] for b in await blobs(world)] == [1]
    await objects_settle_to(s3, settings, {blob["object_key"]})
    resp = await client.get(generic_url(world.project_id, version="2.0.0"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 200 and await resp.read() == body
    resp = await client.delete(generic_url(world.project_id, version="2.0.0"),
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 204
    assert await blobs(world) == []
    await objects_settle_to(s3, settings, set())
    await eventually(
        lambda: world.conn.fetchval("SELECT count(*) = 0 FROM object_deletions"),
        "the deletion queue drained")


async def test_deleting_a_project_drops_its_references(client, world: World) -> None:
    body = os.urandom(1000)
    await put(client, world, body, version="1.0.0")
    await put(client, world, body, version="2.0.0")
    [blob] = await blobs(world)
    await world.conn.execute("DELETE FROM projects WHERE id = $1", world.project_id)
    assert await blobs(world) == []
    queued = await world.conn.fetch("SELECT object_key FROM object_deletions")
    # The shared object once (the second upload's own copy may still be queued too).
    assert [q["object_key"] for q in queued].count(blob["object_key"]) == 1


async def test_same_size_other_bytes_are_two_blobs(client, world: World) -> None:
    await put(client, world, b"a" * 100, version="1.0.0")
    await put(client, world, b"b" * 100, version="2.0.0")
    assert [b["refcount"] for b in await blobs(world)] == [1, 1]


async def test_migration_0008_makes_a_blob_of_every_stored_object(new_database) -> None:  # noqa: F811
    url = await new_database()
    first = [m for m in load_migrations() if m.version == 1]
    await migrate(url, migrations=first)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("""
            INSERT INTO namespaces (kind, name, path, full_path) VALUES ('group', 'g', 'g', 'g');
            INSERT INTO projects (namespace_id, name, path) VALUES (1, 'p', 'p');
            INSERT INTO packages (project_id, name, version) VALUES (1, 'pkg', '1.0.0');
            INSERT INTO package_files (package_id, project_id, file_name, size, file_md5,
                                       file_sha1, file_sha256, object_key)
            VALUES (1, 1, 'a', 3, 'm', 's', 'h1', 'k1'), (1, 1, 'b', 3, 'm', 's', 'h1', 'k2');
        """)
        await migrate(url)
        rows = await conn.fetch("SELECT object_key, sha256, size, refcount FROM blobs"
                                " ORDER BY object_key")
        assert [tuple(r) for r in rows] == [("k1", "h1", 3, 1), ("k2", "h1", 3, 1)]
        await conn.execute("DELETE FROM package_files WHERE object_key = 'k1'")
        assert await conn.fetchval("SELECT array_agg(object_key) FROM object_deletions") == [
            "k1"
        ]
    finally:
        await conn.close()


async def test_identical_uploads_and_deploys_racing_under_a_quota_all_commit(
    client, world: World
) -> None:
    # Every commit takes the version's lock, the content's, then the quota's, in that order:
    # uploads and deploys of one content into other versions of a limited project never wait
    # on each other in a cycle (PostgreSQL would abort one as a deadlock).
    await world.conn.execute("UPDATE projects SET packages_max_bytes = $2 WHERE id = $1",
                             world.project_id, 10**9)
    body = os.urandom(4096)
    await put(client, world, body, version="0.0.0")
    deploy = {**hdr(world.tokens["developer"]), "X-Checksum-Deploy": "true",
              "X-Checksum-Sha256": hashlib.sha256(body).hexdigest(), "Content-Length": "0"}

    async def one(i: int) -> int:
        url = generic_url(world.project_id, version=f"1.0.{i}")
        if i % 2:
            resp = await client.put(url, data=b"", headers=deploy)
        else:
            resp = await client.put(url, data=body, headers=hdr(world.tokens["developer"]))
        return resp.status

    assert await asyncio.gather(*(one(i) for i in range(16))) == [201] * 16
    [blob] = await blobs(world)
    assert blob["refcount"] == 17
