"""Package protection rules against every kind of caller: roles below and at the minimum,
administrators, deploy and job tokens, another project's token, and lower roles on the
rules API itself. A refused push is answered before its body is sent and stores nothing."""

from __future__ import annotations

import asyncio

import pytest

from gateway import auth
from gateway.identity import tokens
from tests.conftest import World
from tests.package_helpers import generic_url, hdr

RULES = "/api/v4/projects/{pid}/packages/protection/rules"
PROTECTED = {"message": "403 Forbidden - Package protected."}
DELETE_PROTECTED = {"message": "403 Forbidden - Package is deletion protected."}


async def rule(world: World, pattern: str = "tool*", *, push: int | None = None,
               delete: int | None = None, package_type: int = 7) -> None:
    await world.conn.execute(
        "INSERT INTO package_protection_rules (project_id, package_name_pattern, package_type,"
        " minimum_access_level_for_push, minimum_access_level_for_delete)"
        " VALUES ($1, $2, $3, $4, $5)", world.project_id, pattern, package_type, push, delete)


async def put(client, headers: dict, name: str = "tool", body: bytes = b"abc",
              project_id: int | None = None, world: World | None = None) -> tuple[int, dict]:
    assert world is not None
    resp = await client.put(generic_url(project_id or world.project_id, name=name), data=body,
                            headers=headers)
    return resp.status, await resp.json()


async def stored(world: World) -> int:
    return await world.conn.fetchval("SELECT count(*) FROM package_files")


@pytest.mark.parametrize(
    ("role", "minimum", "allowed"),
    [
        ("developer", auth.MAINTAINER, False),
        ("maintainer", auth.MAINTAINER, True),
        ("maintainer", auth.OWNER, False),
        ("owner", auth.OWNER, True),
        ("owner", 60, False),  # admin: only administrators may push
    ],
)
async def test_push_needs_the_rules_minimum(client, world: World, role: str, minimum: int,
                                            allowed: bool) -> None:
    await rule(world, push=minimum)
    status, body = await put(client, hdr(world.tokens[role]), world=world)
    if allowed:
        assert status == 201
    else:
        assert (status, body) == (403, PROTECTED)
        assert await stored(world) == 0


async def test_administrator_pushes_past_every_rule(client, world: World) -> None:
    await rule(world, push=60)
    assert (await put(client, hdr(world.admin_token), world=world))[0] == 201


async def test_pattern_is_a_case_insensitive_glob(client, world: World) -> None:
    await rule(world, "Tool-*-linux", push=auth.OWNER)
    dev = hdr(world.tokens["developer"])
    assert (await put(client, dev, "tool-1-linux", world=world))[0] == 403
    assert (await put(client, dev, "TOOL-x-y-LINUX", world=world))[0] == 403
    assert (await put(client, dev, "tool-1-linux2", world=world))[0] == 201
    assert (await put(client, dev, "tool", world=world))[0] == 201


async def test_like_wildcards_in_a_pattern_are_literal(client, world: World) -> None:
    await rule(world, "a_b%", push=auth.OWNER)
    dev = hdr(world.tokens["developer"])
    assert (await put(client, dev, "axbyy", world=world))[0] == 201
    assert (await put(client, dev, "a_b", world=world))[0] == 201
    await rule(world, "a_b", push=auth.OWNER)
    assert (await put(client, dev, "axb", world=world))[0] == 201
    assert (await put(client, dev, "a_b", world=world))[0] == 403


async def test_rule_of_another_package_type_does_not_apply(client, world: World) -> None:
    await rule(world, push=auth.OWNER, package_type=2)  # npm
    assert (await put(client, hdr(world.tokens["developer"]), world=world))[0] == 201


async def test_delete_only_rule_leaves_pushes_alone(client, world: World) -> None:
    await rule(world, delete=auth.OWNER)
    assert (await put(client, hdr(world.tokens["developer"]), world=world))[0] == 201


async def test_job_token_pushes_with_its_users_role(client, world: World) -> None:
    await rule(world, push=auth.OWNER)
    dev = await world.conn.fetchval("SELECT id FROM users WHERE username = 'developer'")
    owner = await world.conn.fetchval("SELECT id FROM users WHERE username = 'owner'")
    dev_job = {"JOB-TOKEN": await world.job_token(dev)}
    owner_job = {"JOB-TOKEN": await world.job_token(owner)}
    assert await put(client, dev_job, world=world) == (403, PROTECTED)
    assert (await put(client, owner_job, world=world))[0] == 201


async def test_deploy_token_is_stopped_by_any_matching_rule(client, world: World) -> None:
    await rule(world, push=auth.MAINTAINER)
    issued = await tokens.issue_deploy_token(
        world.conn, project_id=world.project_id, name="d",
        scopes=["write_package_registry", "read_package_registry"], username=None,
        expires_at=None)
    deploy = {"Deploy-Token": issued.token}
    assert await put(client, deploy, world=world) == (403, PROTECTED)
    assert (await put(client, deploy, "other", world=world))[0] == 201


async def test_rules_of_one_project_do_not_apply_to_another(client, world: World) -> None:
    other = await world.project("acme", "other")
    dev = await world.conn.fetchval("SELECT id FROM users WHERE username = 'developer'")
    await world.member(dev, auth.DEVELOPER, other)
    await rule(world, push=auth.OWNER)
    assert (await put(client, hdr(world.tokens["developer"]), project_id=other,
                      world=world))[0] == 201


async def test_refused_push_is_answered_before_the_body_is_sent(client, world: World) -> None:
    """With ``Expect: 100-continue`` the client waits; the 403 comes instead of 100."""
    await rule(world, push=auth.OWNER)
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"PUT {generic_url(world.project_id, name='tool')} HTTP/1.1\r\nHost: x\r\n"
        f"PRIVATE-TOKEN: {world.tokens['developer']}\r\nContent-Length: 1000000\r\n"
        "Expect: 100-continue\r\n\r\n".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 403")
    assert await stored(world) == 0
    assert await world.conn.fetchval("SELECT count(*) FROM pending_uploads") == 0


async def test_rule_created_while_streaming_refuses_at_commit(client, world: World,
                                                               s3, bucket) -> None:
    """The commit checks again: a rule that appears mid-upload still refuses, and the object
    written meanwhile is removed."""
    dev = hdr(world.tokens["developer"])

    async def body():
        yield b"a" * 1000
        await rule(world, push=auth.OWNER)
        yield b"b" * 1000

    resp = await client.put(generic_url(world.project_id, name="tool"), data=body(),
                            headers=dev)
    assert (resp.status, await resp.json()) == (403, PROTECTED)
    assert await stored(world) == 0
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


# --- deletes -------------------------------------------------------------------------------


async def _package(client, world: World, name: str = "tool") -> tuple[int, int]:
    status, _ = await put(client, hdr(world.admin_token), name, world=world)
    assert status == 201
    row = await world.conn.fetchrow(
        "SELECT p.id AS pid, f.id AS fid FROM packages p JOIN package_files f"
        " ON f.package_id = p.id WHERE p.name = $1", name)
    return row["pid"], row["fid"]


@pytest.mark.parametrize("route", ["package", "file", "path_file", "path_version"])
@pytest.mark.parametrize(("who", "refused"),
                         [("maintainer", True), ("owner", False), ("admin", False)])
async def test_delete_honours_minimum_access_level_for_delete(
    client, world: World, route: str, who: str, refused: bool
) -> None:
    await rule(world, delete=auth.OWNER)
    package_id, file_id = await _package(client, world)
    base = f"/api/v4/projects/{world.project_id}"
    url = {
        "package": f"{base}/packages/{package_id}",
        "file": f"{base}/packages/{package_id}/package_files/{file_id}",
        "path_file": generic_url(world.project_id, name="tool"),
        "path_version": f"{base}/packages/generic/tool/1.0.0",
    }[route]
    token = world.admin_token if who == "admin" else world.tokens[who]
    resp = await client.delete(url, headers=hdr(token))
    if refused:
        assert (resp.status, await resp.json()) == (403, DELETE_PROTECTED)
        assert await stored(world) == 1
    else:
        assert resp.status == 204
        assert await stored(world) == 0


async def test_push_only_rule_leaves_maintainer_deletes_alone(client, world: World) -> None:
    await rule(world, push=auth.OWNER)
    package_id, _ = await _package(client, world)
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/packages/{package_id}",
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 204


async def test_missing_package_is_404_before_protection(client, world: World) -> None:
    await rule(world, "*", delete=60)
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/packages/999",
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 404


# --- the rules API itself ------------------------------------------------------------------


@pytest.mark.parametrize(("who", "status"), [("guest", 403), ("reporter", 403),
                                              ("developer", 403), ("outsider", 404)])
@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
async def test_lower_roles_cannot_read_or_change_rules(client, world: World, who: str,
                                                       status: int, method: str) -> None:
    await rule(world, push=auth.OWNER)
    rule_id = await world.conn.fetchval("SELECT id FROM package_protection_rules")
    url = RULES.format(pid=world.project_id)
    if method in ("PATCH", "DELETE"):
        url = f"{url}/{rule_id}"
    fields = {"package_name_pattern": "x", "package_type": "generic",
              "minimum_access_level_for_push": "maintainer"}
    resp = await client.request(method, url, json=fields if method != "GET" else None,
                                headers=hdr(world.tokens[who]))
    assert resp.status == status
    assert await world.conn.fetchval(
        "SELECT count(*) FROM package_protection_rules WHERE package_name_pattern = 'tool*'"
        " AND minimum_access_level_for_push = $1", auth.OWNER) == 1


async def test_anonymous_and_bad_tokens_get_401(client, world: World) -> None:
    url = RULES.format(pid=world.project_id)
    assert (await client.get(url)).status == 401
    assert (await client.get(url, headers=hdr("glpat-nosuchtoken000000"))).status == 401


async def test_deploy_and_job_tokens_cannot_use_the_rules_api(client, world: World) -> None:
    owner = await world.conn.fetchval("SELECT id FROM users WHERE username = 'owner'")
    job = {"JOB-TOKEN": await world.job_token(owner)}
    issued = await tokens.issue_deploy_token(
        world.conn, project_id=world.project_id, name="d",
        scopes=["write_package_registry"], username=None, expires_at=None)
    url = RULES.format(pid=world.project_id)
    for headers in (job, {"Deploy-Token": issued.token}):
        assert (await client.get(url, headers=headers)).status == 401


async def test_maintainer_of_another_project_gets_404(client, world: World) -> None:
    other = await world.project("acme", "other")
    someone = await world.user("someone")
    await world.member(someone.id, auth.MAINTAINER, other)
    token = await world.token(someone.id)
    resp = await client.get(RULES.format(pid=world.project_id), headers=hdr(token))
    assert (resp.status, await resp.json()) == (404, {"message": "404 Project Not Found"})
