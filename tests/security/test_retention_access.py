"""Retention deletes packages: only a project's Maintainers and up (and administrators) read,
change, preview or run its policy; lower roles get 403, outsiders and other projects' members
404, deploy and job tokens 401."""

from __future__ import annotations

import pytest

from gateway import auth
from tests.conftest import World
from tests.package_helpers import hdr


def url(world: World, tail: str = "") -> str:
    return f"/api/v4/projects/{world.project_id}/packages/retention{tail}"


@pytest.mark.parametrize(("who", "status"), [("developer", 403), ("reporter", 403),
                                              ("guest", 403), ("outsider", 404)])
@pytest.mark.parametrize(("method", "tail"), [("GET", ""), ("PUT", ""), ("GET", "/preview"),
                                               ("POST", "/run")])
async def test_lower_roles_cannot_touch_retention(client, world: World, who: str, status: int,
                                                  method: str, tail: str) -> None:
    resp = await client.request(method, url(world, tail), json={"keep_n_latest": 1},
                                headers=hdr(world.tokens[who]))
    assert resp.status == status
    assert await world.conn.fetchval("SELECT count(*) FROM package_retention_policies") == 0


async def test_maintainer_of_another_project_gets_404(client, world: World) -> None:
    other = await world.project("acme", "other")
    someone = await world.user("someone")
    await world.member(someone.id, auth.MAINTAINER, other)
    resp = await client.put(url(world), json={"keep_n_latest": 1},
                            headers=hdr(await world.token(someone.id)))
    assert resp.status == 404


async def test_job_tokens_and_anonymous_get_401(client, world: World) -> None:
    owner = await world.conn.fetchval("SELECT id FROM users WHERE username = 'owner'")
    job = {"JOB-TOKEN": await world.job_token(owner)}
    assert (await client.post(url(world, "/run"), headers=job)).status == 401
    assert (await client.get(url(world, "/preview"))).status == 401


async def test_pathological_regex_cannot_stall_a_run(client, world: World) -> None:
    resp = await client.put(url(world), json={"keep_n_latest": 1, "name_regex": "(a+)+b"},
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 200  # RE2: linear time, whatever the names
    resp = await client.put(url(world), json={"name_regex": r"(a)\1"},
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 400  # backreferences are not RE2
