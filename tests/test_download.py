"""Downloading files: the redirect (followed, bytes compared), proxy mode, HEAD, newest file."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import parse_qs, urlsplit

import aiohttp

from gateway.app import create_app
from tests.conftest import World

URL = "/api/v4/projects/{pid}/packages/generic/my_package/0.0.1/{file}"


def url(world: World, file: str = "file.txt") -> str:
    return URL.format(pid=world.project_id, file=file)


async def upload(
    client, world: World, body: bytes, file: str = "file.txt", query: str = ""
) -> None:
    resp = await client.put(url(world, file) + query, data=body,
                            headers={"PRIVATE-TOKEN": world.tokens["developer"]})
    assert resp.status in (200, 201), await resp.text()


async def test_get_redirects_to_a_presigned_url_that_serves_the_bytes(client, world: World) -> None:
    body = os.urandom(5000)
    await upload(client, world, body)
    resp = await client.get(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]},
                            allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["X-Checksum-SHA256"] == hashlib.sha256(body).hexdigest()
    location = resp.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["response-content-disposition"] == [
        "attachment; filename=\"file.txt\"; filename*=UTF-8''file.txt"
    ]
    assert query["response-content-type"] == ["application/octet-stream"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert int(query["X-Amz-Expires"][0]) <= 300
    async with aiohttp.ClientSession() as s, s.get(location) as direct:
        assert direct.status == 200
        assert await direct.read() == body


async def test_newest_of_duplicate_files_is_served(client, world: World) -> None:
    await upload(client, world, b"first")
    await upload(client, world, b"second")
    resp = await client.get(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]},
                            allow_redirects=False)
    assert resp.headers["X-Checksum-SHA256"] == hashlib.sha256(b"second").hexdigest()


async def test_hidden_package_is_downloadable(client, world: World) -> None:
    await upload(client, world, b"secret", query="?status=hidden")
    resp = await client.get(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]},
                            allow_redirects=False)
    assert resp.status == 302


async def test_missing_file_is_gitlabs_record_not_found(client, world: World) -> None:
    await upload(client, world, b"x")
    resp = await client.get(url(world, "other.txt"),
                            headers={"PRIVATE-TOKEN": world.tokens["reporter"]})
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}


async def test_missing_package_is_gitlabs_record_not_found(client, world: World) -> None:
    resp = await client.get(
        f"/api/v4/projects/{world.project_id}/packages/generic/nope/0.0.1/file.txt",
        headers={"PRIVATE-TOKEN": world.tokens["reporter"]},
    )
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}


async def test_file_under_a_sub_path_downloads_by_the_same_url(client, world: World) -> None:
    await upload(client, world, b"nested", file="path/to/file.txt")
    ok = await client.get(url(world, "path/to/file.txt"),
                          headers={"PRIVATE-TOKEN": world.tokens["reporter"]},
                          allow_redirects=False)
    assert ok.status == 302
    bare = await client.get(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]})
    assert bare.status == 404


async def test_head_is_answered_by_the_gateway_with_length_and_checksum(
    client, world: World
) -> None:
    body = b"y" * 1234
    await upload(client, world, body)
    resp = await client.head(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]},
                             allow_redirects=False)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "1234"
    digest = hashlib.sha256(body).hexdigest()
    assert resp.headers["X-Checksum-SHA256"] == digest
    assert resp.headers["ETag"] == f'"{digest}"'
    assert "Location" not in resp.headers


async def test_proxy_mode_streams_the_bytes_with_gitlabs_headers(
    aiohttp_client, settings, world: World
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(download_mode="proxy")))
    body = os.urandom(3 * 1024 * 1024 + 7)
    await upload(client, world, body)
    resp = await client.get(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]})
    assert resp.status == 200
    assert await resp.read() == body
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"] == (
        "attachment; filename=\"file.txt\"; filename*=UTF-8''file.txt"
    )
    assert resp.headers["X-Checksum-SHA256"] == hashlib.sha256(body).hexdigest()


async def test_download_marks_the_package_as_downloaded(client, world: World) -> None:
    await upload(client, world, b"z")
    await client.get(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]},
                     allow_redirects=False)
    assert await world.conn.fetchval("SELECT last_downloaded_at IS NOT NULL FROM packages")
