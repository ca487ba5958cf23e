"""Who reads and sets storage quotas and statistics: administrators set them; a project's
Reporters (a group's Maintainers) read them; lower roles, outsiders and other projects'
tokens do not; deploy and job tokens cannot use the quota API."""

from __future__ import annotations

import pytest

from tests.conftest import World
from tests.package_helpers import hdr


def url(world: World) -> str:
    return f"/api/v4/projects/{world.project_id}/packages/quota"


@pytest.mark.parametrize("who", ["maintainer", "owner", "developer"])
async def test_only_administrators_set_a_quota(client, world: World, who: str) -> None:
    resp = await client.put(url(world), json={"max_bytes": 10**12},
                            headers=hdr(world.tokens[who]))
    assert (resp.status, await resp.json()) == (403, {"message": "403 Forbidden"})
    assert await world.conn.fetchval(
        "SELECT packages_max_bytes FROM projects WHERE id = $1", world.project_id) is None


@pytest.mark.parametrize(("who", "status"), [("guest", 403), ("reporter", 200),
                                              ("outsider", 404)])
async def test_reading_a_quota_needs_reporter(client, world: World, who: str,
                                              status: int) -> None:
    resp = await client.get(url(world), headers=hdr(world.tokens[who]))
    assert resp.status == status


async def test_guest_sees_no_statistics(client, world: World) -> None:
    resp = await client.get(f"/api/v4/projects/{world.project_id}?statistics=true",
                            headers=hdr(world.tokens["guest"]))
    assert resp.status == 200
    assert "statistics" not in await resp.json()


async def test_group_quota_needs_group_maintainer_to_read(client, world: World) -> None:
    resp = await client.get("/api/v4/groups/acme/packages/quota",
                            headers=hdr(world.tokens["maintainer"]))  # a project member only
    assert resp.status in (403, 404)
    assert (await client.get("/api/v4/groups/acme/packages/quota",
                             headers=hdr(world.admin_token))).status == 200


async def test_job_and_anonymous_callers_get_401(client, world: World) -> None:
    owner = await world.conn.fetchval("SELECT id FROM users WHERE username = 'owner'")
    job = {"JOB-TOKEN": await world.job_token(owner)}
    assert (await client.put(url(world), json={"max_bytes": 1}, headers=job)).status == 401
    assert (await client.get(url(world))).status == 401


async def test_huge_or_non_ascii_numbers_are_refused(client, world: World) -> None:
    for value in ("9" * 30, "١٢٣", "1e3"):
        resp = await client.put(url(world), json={"max_bytes": value},
                                headers=hdr(world.admin_token))
        assert resp.status == 400, value
