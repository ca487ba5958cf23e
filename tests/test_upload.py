"""Uploading files: the seed page's requests, sizes around part boundaries, chunked bodies."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from gateway.app import create_app
from gateway.config import MiB
from tests.conftest import World

URL = "/api/v4/projects/{pid}/packages/generic/{name}/{version}/{file}"


def url(world: World, file: str = "file.txt", name: str = "my_package", version: str = "0.0.1",
        pid: object = None) -> str:
    return URL.format(pid=pid or world.project_id, name=name, version=version, file=file)


def hdr(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


async def test_publish_with_private_token_answers_201_created(client, world: World) -> None:
    resp = await client.put(url(world), data=b"hello", headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    assert await resp.json() == {"message": "201 Created"}
    assert resp.headers["Content-Type"] == "application/json"


async def test_publish_with_basic_auth_any_user_name(client, world: World) -> None:
    cred = base64.b64encode(f"user:{world.tokens['developer']}".encode()).decode()
    resp = await client.put(url(world), data=b"x", headers={"Authorization": f"Basic {cred}"})
    assert resp.status == 201


async def test_publish_with_bearer_token(client, world: World) -> None:
    resp = await client.put(
        url(world), data=b"x", headers={"Authorization": f"Bearer {world.tokens['developer']}"}
    )
    assert resp.status == 201


async def test_select_package_file_returns_record_with_all_digests(client, world: World) -> None:
    body = os.urandom(1000)
    resp = await client.put(
        url(world) + "?select=package_file", data=body, headers=hdr(world.tokens["developer"])
    )
    assert resp.status == 200
    rec = await resp.json()
    assert rec["file_name"] == "file.txt"
    assert rec["size"] == 1000
    assert rec["file_md5"] == hashlib.md5(body).hexdigest()
    assert rec["file_sha1"] == hashlib.sha1(body).hexdigest()
    assert rec["file_sha256"] == hashlib.sha256(body).hexdigest()
    assert rec["status"] == "default"
    assert rec["project_id"] == world.project_id
    assert list(rec)[:4] == ["id", "package_id", "created_at", "updated_at"]
    assert rec["created_at"].endswith("Z")


async def test_nested_path_is_stored_percent_encoded(client, world: World) -> None:
    resp = await client.put(
        url(world, "path/to/file.txt") + "?select=package_file", data=b"n",
        headers=hdr(world.tokens["developer"]),
    )
    assert resp.status == 200
    assert (await resp.json())["file_name"] == "path%2Fto%2Ffile.txt"


async def test_project_addressed_by_url_encoded_path(client, world: World) -> None:
    resp = await client.put(
        url(world, pid="acme%2Ftools"), data=b"p", headers=hdr(world.tokens["developer"])
    )
    assert resp.status == 201


async def test_empty_file_is_stored_with_the_empty_digest(client, world: World) -> None:
    resp = await client.put(
        url(world) + "?select=package_file", data=b"", headers=hdr(world.tokens["developer"])
    )
    rec = await resp.json()
    assert rec["size"] == 0
    assert rec["file_sha256"] == hashlib.sha256(b"").hexdigest()


async def test_one_byte_file_round_trips(client, world: World) -> None:
    await client.put(url(world), data=b"\x00", headers=hdr(world.tokens["developer"]))
    resp = await client.get(url(world), headers=hdr(world.tokens["developer"]),
                            allow_redirects=False)
    assert resp.status == 302


# The default GATEWAY_PART_SIZE (the fixture's settings keep it).
PART = 16 * MiB


@pytest.mark.parametrize("size", [PART - 1, PART, PART + 1, 3 * PART + 5])
async def test_sizes_around_part_boundaries_keep_their_digests(client, world: World, s3,
                                                               settings, size: int) -> None:
    body = os.urandom(size)
    resp = await client.put(
        url(world) + "?select=package_file", data=body, headers=hdr(world.tokens["developer"])
    )
    rec = await resp.json()
    assert rec["size"] == size
    assert rec["file_sha256"] == hashlib.sha256(body).hexdigest()
    key = await world.conn.fetchval("SELECT object_key FROM package_files WHERE id = $1", rec["id"])
    stored = s3.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()
    assert stored == body


async def test_chunked_body_without_content_length_round_trips(client, world: World, s3,
                                                               settings) -> None:
    body = os.urandom(20 * MiB + 123)

    async def chunks():
        for i in range(0, len(body), 1 * MiB):
            yield body[i : i + 1 * MiB]

    resp = await client.put(
        url(world) + "?select=package_file", data=chunks(), headers=hdr(world.tokens["developer"])
    )
    rec = await resp.json()
    assert resp.status == 200, rec
    assert rec["size"] == len(body)
    assert rec["file_md5"] == hashlib.md5(body).hexdigest()
    key = await world.conn.fetchval("SELECT object_key FROM package_files WHERE id = $1", rec["id"])
    assert s3.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read() == body


async def test_uploads_leave_no_open_multipart_upload(client, world: World, s3, settings) -> None:
    await client.put(url(world), data=os.urandom(17 * MiB), headers=hdr(world.tokens["developer"]))
    assert s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", []) == []
    assert await world.conn.fetchval("SELECT count(*) FROM pending_uploads") == 0


async def test_hidden_status_creates_a_hidden_package(client, world: World) -> None:
    resp = await client.put(
        url(world) + "?status=hidden", data=b"h", headers=hdr(world.tokens["developer"])
    )
    assert resp.status == 201
    assert await world.conn.fetchval("SELECT status FROM packages") == 1


async def test_same_file_twice_keeps_both_records(client, world: World) -> None:
    for body in (b"A", b"B"):
        resp = await client.put(url(world), data=body, headers=hdr(world.tokens["developer"]))
        assert resp.status == 201
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 2
    assert await world.conn.fetchval("SELECT count(*) FROM packages") == 1


async def test_file_of_the_size_limit_is_too_large(aiohttp_client, settings, world: World,
                                                   s3) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(max_file_size=100)))
    resp = await client.put(url(world), data=b"x" * 100, headers=hdr(world.tokens["developer"]))
    assert resp.status == 400
    assert await resp.json() == {"message": "400 Bad request - File is too large"}
    ok = await client.put(url(world), data=b"x" * 99, headers=hdr(world.tokens["developer"]))
    assert ok.status == 201


async def test_chunked_body_over_the_limit_is_refused_and_leaves_nothing(
    aiohttp_client, settings, world: World, s3
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(max_file_size=9 * MiB)))

    async def chunks():
        for _ in range(12):
            yield b"z" * MiB

    resp = await client.put(url(world), data=chunks(), headers=hdr(world.tokens["developer"]))
    assert resp.status == 400
    assert await resp.json() == {"message": "400 Bad request - File is too large"}
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 0
    assert await world.conn.fetchval("SELECT count(*) FROM pending_uploads") == 0
    assert s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=settings.s3_bucket).get("KeyCount", 0) == 0

