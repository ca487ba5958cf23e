"""Deploy by checksum never hands out another project's bytes: content the caller may not
read is answered exactly as content the server never saw (GitLab's 404), and nothing is
created; content the caller may read elsewhere is linked."""

from __future__ import annotations

import hashlib
import os

from gateway import auth
from tests.conftest import World
from tests.package_helpers import generic_url, hdr
from tests.security.common import other_project

SECRET = os.urandom(20_000)
SHA256 = hashlib.sha256(SECRET).hexdigest()


def deploy_headers(token: str, sha256: str = SHA256) -> dict[str, str]:
    return {**hdr(token), "X-Checksum-Deploy": "true", "X-Checksum-Sha256": sha256,
            "Content-Length": "0"}


async def secret_elsewhere(client, world: World, visibility: str = "private") -> int:
    """SECRET stored in a project the World's users are no members of."""
    pid = await other_project(world)
    await world.conn.execute("UPDATE projects SET visibility = $2 WHERE id = $1", pid,
                             visibility)
    resp = await client.put(generic_url(pid), data=SECRET, headers=hdr(world.admin_token))
    assert resp.status == 201
    return pid


async def test_bytes_of_a_project_the_caller_cannot_read_are_404(client, world: World) -> None:
    await secret_elsewhere(client, world)
    resp = await client.put(generic_url(world.project_id, file="stolen.bin"), data=b"",
                            headers=deploy_headers(world.tokens["developer"]))
    unknown = await client.put(generic_url(world.project_id, file="other.bin"), data=b"",
                               headers=deploy_headers(world.tokens["developer"], "cd" * 32))
    assert (resp.status, await resp.read()) == (unknown.status, await unknown.read())
    assert resp.status == 404
    assert await world.conn.fetchval(
        "SELECT count(*) FROM package_files WHERE project_id = $1", world.project_id) == 0


async def test_a_guest_of_the_other_project_cannot_take_its_bytes(client, world: World) -> None:
    pid = await secret_elsewhere(client, world)
    dev = await world.conn.fetchval("SELECT id FROM users WHERE username = 'developer'")
    await world.member(dev, auth.GUEST, pid)
    resp = await client.put(generic_url(world.project_id, file="stolen.bin"), data=b"",
                            headers=deploy_headers(world.tokens["developer"]))
    assert resp.status == 404


async def test_a_reporter_of_the_other_project_may_link_its_bytes(client, world: World) -> None:
    pid = await secret_elsewhere(client, world)
    dev = await world.conn.fetchval("SELECT id FROM users WHERE username = 'developer'")
    await world.member(dev, auth.REPORTER, pid)
    resp = await client.put(generic_url(world.project_id, file="shared.bin"), data=b"",
                            headers=deploy_headers(world.tokens["developer"]))
    assert resp.status == 201
    got = await client.get(generic_url(world.project_id, file="shared.bin"),
                           headers=hdr(world.tokens["reporter"]))
    assert await got.read() == SECRET


async def test_bytes_of_a_public_project_may_be_linked(client, world: World) -> None:
    await secret_elsewhere(client, world, visibility="public")
    resp = await client.put(generic_url(world.project_id, file="public.bin"), data=b"",
                            headers=deploy_headers(world.tokens["developer"]))
    assert resp.status == 201


async def test_a_reporter_cannot_deploy_even_known_bytes(client, world: World) -> None:
    resp = await client.put(generic_url(world.project_id), data=SECRET,
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    resp = await client.put(generic_url(world.project_id, file="copy.bin"), data=b"",
                            headers=deploy_headers(world.tokens["reporter"]))
    assert resp.status == 403


async def test_an_anonymous_deploy_is_401(client, world: World) -> None:
    resp = await client.put(generic_url(world.project_id), data=b"",
                            headers={"X-Checksum-Deploy": "true", "X-Checksum-Sha256": SHA256,
                                     "Content-Length": "0"})
    assert resp.status == 401


async def test_a_malformed_deploy_flag_is_400(client, world: World) -> None:
    resp = await client.put(generic_url(world.project_id), data=b"",
                            headers={**deploy_headers(world.tokens["developer"]),
                                     "X-Checksum-Deploy": "yes please"})
    assert resp.status == 400
    assert await resp.json() == {"message": "400 Bad request - X-Checksum-Deploy is invalid"}
