"""Hole 3: only an Owner (or an administrator) grants, changes or removes the Owner role
(``Members::UpdateService``/``DestroyService``: ``cannot_revoke_owner_responsibilities``),
and a group keeps at least one Owner (``GroupMemberPolicy`` ``last_owner``)."""

from __future__ import annotations

from gateway.enums import DEVELOPER, MAINTAINER, OWNER
from tests.conftest import World
from tests.security.common import FORBIDDEN, acme_id, group_member, h, user_id


def member_url(world: World, uid: int) -> str:
    return f"/api/v4/projects/{world.project_id}/members/{uid}"


async def _level(world: World, uid: int) -> int | None:
    return await world.conn.fetchval(
        "SELECT access_level FROM project_members WHERE project_id = $1 AND user_id = $2",
        world.project_id, uid)


async def test_maintainer_may_not_demote_the_owner(client, world: World) -> None:
    owner = await user_id(world, "owner")
    resp = await client.put(member_url(world, owner), json={"access_level": DEVELOPER},
                            headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (403, FORBIDDEN)
    assert await _level(world, owner) == OWNER


async def test_maintainer_may_not_remove_the_owner(client, world: World) -> None:
    owner = await user_id(world, "owner")
    resp = await client.delete(member_url(world, owner), headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (403, FORBIDDEN)
    assert await _level(world, owner) == OWNER


async def test_maintainer_may_not_promote_to_owner(client, world: World) -> None:
    developer = await user_id(world, "developer")
    resp = await client.put(member_url(world, developer), json={"access_level": OWNER},
                            headers=h(world.tokens["maintainer"]))
    assert resp.status == 403
    assert await _level(world, developer) == DEVELOPER


async def test_maintainer_may_not_promote_themself_to_owner(client, world: World) -> None:
    maintainer = await user_id(world, "maintainer")
    resp = await client.put(member_url(world, maintainer), json={"access_level": OWNER},
                            headers=h(world.tokens["maintainer"]))
    assert resp.status == 403


async def test_maintainer_still_manages_developers(client, world: World) -> None:
    developer = await user_id(world, "developer")
    changed = await client.put(member_url(world, developer), json={"access_level": MAINTAINER},
                               headers=h(world.tokens["maintainer"]))
    removed = await client.delete(member_url(world, developer),
                                  headers=h(world.tokens["maintainer"]))
    assert (changed.status, removed.status) == (200, 204)


async def test_owner_demotes_another_owner(client, world: World) -> None:
    maintainer = await user_id(world, "maintainer")
    await world.member(maintainer, OWNER)
    resp = await client.put(member_url(world, maintainer), json={"access_level": DEVELOPER},
                            headers=h(world.tokens["owner"]))
    assert resp.status == 200
    assert await _level(world, maintainer) == DEVELOPER


async def test_group_maintainer_may_not_touch_group_members(client, world: World) -> None:
    group = await acme_id(world)
    await group_member(world, group, "maintainer", MAINTAINER)
    await group_member(world, group, "developer", DEVELOPER)
    developer = await user_id(world, "developer")
    resp = await client.put(f"/api/v4/groups/acme/members/{developer}",
                            json={"access_level": MAINTAINER},
                            headers=h(world.tokens["maintainer"]))
    assert resp.status == 403


async def test_the_last_group_owner_is_neither_removed_nor_demoted(client, world: World) -> None:
    root = await user_id(world, "root")  # acme's only Owner
    demote = await client.put(f"/api/v4/groups/acme/members/{root}",
                              json={"access_level": MAINTAINER}, headers=h(world.admin_token))
    remove = await client.delete(f"/api/v4/groups/acme/members/{root}",
                                 headers=h(world.admin_token))
    assert (demote.status, remove.status) == (403, 403)
    level = await world.conn.fetchval(
        "SELECT access_level FROM group_members WHERE group_id = $1 AND user_id = $2",
        await acme_id(world), root)
    assert level == OWNER


async def test_a_second_group_owner_may_remove_the_first(client, world: World) -> None:
    group = await acme_id(world)
    await group_member(world, group, "owner", OWNER)
    root = await user_id(world, "root")
    resp = await client.delete(f"/api/v4/groups/acme/members/{root}",
                               headers=h(world.tokens["owner"]))
    assert resp.status == 204


async def test_the_last_group_owner_may_not_leave(client, world: World) -> None:
    group = await acme_id(world)
    await world.conn.execute("DELETE FROM group_members WHERE group_id = $1", group)
    await group_member(world, group, "owner", OWNER)
    owner = await user_id(world, "owner")
    resp = await client.delete(f"/api/v4/groups/acme/members/{owner}",
                               headers=h(world.tokens["owner"]))
    assert resp.status == 403


async def test_members_may_leave(client, world: World) -> None:
    developer = await user_id(world, "developer")
    resp = await client.delete(member_url(world, developer),
                               headers=h(world.tokens["developer"]))
    assert resp.status == 204


async def test_the_holder_of_a_personal_project_stays_its_owner(client, world: World) -> None:
    token = world.tokens["developer"]
    created = await client.post("/api/v4/projects", json={"name": "mine"}, headers=h(token))
    pid = (await created.json())["id"]
    developer = await user_id(world, "developer")
    resp = await client.delete(f"/api/v4/projects/{pid}/members/{developer}",
                               headers=h(world.admin_token))
    assert resp.status == 403
