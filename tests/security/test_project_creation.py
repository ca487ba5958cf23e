"""Hole 4: who may create projects, and how visible they may be.

Bots and external users create no projects (GitLab gives both a ``projects_limit`` of 0 and no
``create_projects`` in groups), ``projects_limit`` holds for personal namespaces
(``Project#check_personal_projects_limit``, rendered ``error!(errors, 403)``), and a project is
never more visible than its group: ``Projects::CreateService`` lowers it on create, the model's
``visibility_level_allowed_by_group`` refuses it on update.
"""

from __future__ import annotations

from gateway.enums import DEVELOPER, MAINTAINER
from tests.conftest import World
from tests.security.common import acme_id, group_member, h, project_bot, user_id

NO_PERSONAL = {"message": ["You cannot create projects in your personal namespace. Contact "
                           "your GitLab administrator."]}
NAMESPACE_INVALID = {"message": {"namespace": ["is not valid"]}}


async def test_a_bot_creates_no_project_of_its_own(client, world: World) -> None:
    token, _, _ = await project_bot(world, world.project_id, MAINTAINER)
    resp = await client.post("/api/v4/projects", json={"name": "escape"}, headers=h(token))
    assert (resp.status, await resp.json()) == (403, NO_PERSONAL)


async def test_a_bot_creates_no_project_in_its_group(client, world: World) -> None:
    token, _, _ = await project_bot(world, world.project_id, MAINTAINER)
    resp = await client.post("/api/v4/projects",
                             json={"name": "escape", "namespace_id": await acme_id(world)},
                             headers=h(token))
    assert (resp.status, await resp.json()) == (400, NAMESPACE_INVALID)


async def test_an_external_user_creates_no_personal_project(client, world: World) -> None:
    user = await world.user("contractor", external=True)
    resp = await client.post("/api/v4/projects", json={"name": "side"},
                             headers=h(await world.token(user.id)))
    assert (resp.status, await resp.json()) == (403, NO_PERSONAL)


async def test_an_external_developer_creates_no_project_in_the_group(client,
                                                                    world: World) -> None:
    await world.user("contractor", external=True)
    await group_member(world, await acme_id(world), "contractor", DEVELOPER)
    token = await world.token(await user_id(world, "contractor"))
    resp = await client.post("/api/v4/projects",
                             json={"name": "side", "namespace_id": await acme_id(world)},
                             headers=h(token))
    assert (resp.status, await resp.json()) == (400, NAMESPACE_INVALID)


async def test_projects_limit_holds(client, world: World) -> None:
    user = await world.user("limited", projects_limit=1)
    token = await world.token(user.id)
    first = await client.post("/api/v4/projects", json={"name": "one"}, headers=h(token))
    second = await client.post("/api/v4/projects", json={"name": "two"}, headers=h(token))
    assert first.status == 201
    assert (second.status, await second.json()) == (403, {"message": [
        "You've reached your limit of 1 projects created. Contact your GitLab administrator."]})


async def test_a_public_project_in_a_private_group_is_made_private(client, world: World) -> None:
    resp = await client.post("/api/v4/projects",
                             json={"name": "loud", "visibility": "public",
                                   "namespace_id": await acme_id(world)},
                             headers=h(world.admin_token))
    assert (resp.status, (await resp.json())["visibility"]) == (201, "private")


async def test_a_maintainer_may_not_make_the_project_public_in_a_private_group(
    client, world: World
) -> None:
    resp = await client.put(f"/api/v4/projects/{world.project_id}",
                            json={"visibility": "public"}, headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (400, {"message": {"visibility_level": [
        "public is not allowed in a private group."]}})
    visibility = await world.conn.fetchval("SELECT visibility FROM projects WHERE id = $1",
                                           world.project_id)
    assert visibility == "private"


async def test_nor_internal_even_as_administrator(client, world: World) -> None:
    resp = await client.put(f"/api/v4/projects/{world.project_id}",
                            json={"visibility": "internal"}, headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {"message": {"visibility_level": [
        "internal is not allowed in a private group."]}})


async def test_a_subgroup_is_no_more_visible_than_its_parent(client, world: World) -> None:
    resp = await client.post("/api/v4/groups",
                             json={"name": "sub", "path": "sub", "visibility": "public",
                                   "parent_id": await acme_id(world)},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {"message": (
        'Failed to save group {:visibility_level=>["public is not allowed since the parent '
        'group has a private visibility."]}')})


async def test_a_group_is_not_made_less_visible_than_its_projects(client, world: World) -> None:
    pub = await world.project("pub", "lib", "public")
    assert pub
    resp = await client.put("/api/v4/groups/pub", json={"visibility": "private"},
                            headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {"message": {"visibility_level": [
        "private is not allowed since this group contains projects with higher visibility."]}})
