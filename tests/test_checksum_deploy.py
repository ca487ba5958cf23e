"""Deploy by checksum: ``X-Checksum-Deploy: true`` with ``X-Checksum-Sha256`` and an empty body
links bytes the server holds into a new file (201, the upload's bodies), or answers 404."""

from __future__ import annotations

import hashlib
import os

from tests.conftest import World
from tests.package_helpers import generic_url, hdr

BODY = os.urandom(50_000)
SHA256 = hashlib.sha256(BODY).hexdigest()


def deploy_headers(token: str, sha256: str = SHA256, **extra: str) -> dict[str, str]:
    return {**hdr(token), "X-Checksum-Deploy": "true", "X-Checksum-Sha256": sha256,
            "Content-Length": "0", **extra}


async def stored(client, world: World) -> None:
    resp = await client.put(generic_url(world.project_id), data=BODY,
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 201


async def test_deploy_links_stored_bytes_into_a_new_file(client, world: World) -> None:
    await stored(client, world)
    target = generic_url(world.project_id, name="other", version="9.9.9", file="copy.bin")
    resp = await client.put(target, data=b"", headers=deploy_headers(world.tokens["developer"]))
    assert resp.status == 201
    assert await resp.json() == {"message": "201 Created"}
    got = await client.get(target, headers=hdr(world.tokens["reporter"]))
    assert await got.read() == BODY
    assert await world.conn.fetchval("SELECT refcount FROM blobs") == 2


async def test_deploy_answers_select_package_file_like_an_upload(client, world: World) -> None:
    await stored(client, world)
    resp = await client.put(generic_url(world.project_id, file="copy.bin") +
                            "?select=package_file", data=b"",
                            headers=deploy_headers(world.tokens["developer"]))
    assert resp.status == 200
    record = await resp.json()
    assert (record["file_name"], record["size"], record["file_sha256"]) == (
        "copy.bin", len(BODY), SHA256)
    assert record["file_md5"] == hashlib.md5(BODY).hexdigest()


async def test_deploy_of_unknown_bytes_is_gitlabs_404(client, world: World) -> None:
    resp = await client.put(generic_url(world.project_id), data=b"",
                            headers=deploy_headers(world.tokens["developer"], "ab" * 32))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}
    assert await world.conn.fetchval("SELECT count(*) FROM packages") == 0


async def test_deploy_after_the_last_copy_was_deleted_is_404(client, world: World) -> None:
    await stored(client, world)
    await client.delete(generic_url(world.project_id), headers=hdr(world.tokens["maintainer"]))
    resp = await client.put(generic_url(world.project_id, file="copy.bin"), data=b"",
                            headers=deploy_headers(world.tokens["developer"]))
    assert resp.status == 404


async def test_deploy_checks_the_other_declared_digests(client, world: World) -> None:
    await stored(client, world)
    resp = await client.put(generic_url(world.project_id, file="copy.bin"), data=b"",
                            headers=deploy_headers(world.tokens["developer"],
                                                   **{"X-Checksum-Sha1": "0" * 40}))
    assert resp.status == 400
    assert (await resp.json())["message"].startswith(
        "400 Bad request - X-Checksum-Sha1 mismatch: expected " + "0" * 40)


async def test_deploy_needs_the_sha256(client, world: World) -> None:
    headers = deploy_headers(world.tokens["developer"])
    del headers["X-Checksum-Sha256"]
    resp = await client.put(generic_url(world.project_id), data=b"", headers=headers)
    assert resp.status == 400
    assert await resp.json() == {
        "message": "400 Bad request - X-Checksum-Deploy needs X-Checksum-Sha256"
    }


async def test_deploy_with_a_body_is_refused(client, world: World) -> None:
    await stored(client, world)
    headers = deploy_headers(world.tokens["developer"])
    del headers["Content-Length"]
    resp = await client.put(generic_url(world.project_id, file="copy.bin"), data=b"bytes",
                            headers=headers)
    assert resp.status == 400
    assert await resp.json() == {
        "message": "400 Bad request - X-Checksum-Deploy needs an empty body (Content-Length: 0)"
    }


async def test_deploy_false_is_an_ordinary_upload(client, world: World) -> None:
    resp = await client.put(generic_url(world.project_id), data=b"bytes",
                            headers={**hdr(world.tokens["developer"]),
                                     "X-Checksum-Deploy": "false"})
    assert resp.status == 201


async def test_deploy_respects_conditional_writes(client, world: World) -> None:
    await stored(client, world)
    resp = await client.put(generic_url(world.project_id), data=b"",
                            headers=deploy_headers(world.tokens["developer"],
                                                   **{"If-None-Match": "*"}))
    assert resp.status == 412
