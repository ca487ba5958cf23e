"""Hole 1: rotating a project or group access token never yields a token above the caller's
own level (``ResourceAccessTokens::RotateService#valid_access_level?``), and only those who
manage the resource's tokens may rotate at all (``lib/api/resource_access_tokens.rb``)."""

from __future__ import annotations

from gateway.enums import DEVELOPER, MAINTAINER, OWNER
from tests.conftest import World
from tests.security.common import PLAIN_401, acme_id, group_bot, group_member, h, project_bot

NOT_ELIGIBLE = {"message": "400 Bad request - Not eligible to rotate token with access level "
                           "higher than the user"}


def rotate_url(world: World, token_id: int, source: str = "projects") -> str:
    ref = world.project_id if source == "projects" else "acme"
    return f"/api/v4/{source}/{ref}/access_tokens/{token_id}/rotate"


async def test_maintainer_may_not_rotate_an_owner_token(client, world: World) -> None:
    token, token_id, _ = await project_bot(world, world.project_id, OWNER)
    resp = await client.post(rotate_url(world, token_id), headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (400, NOT_ELIGIBLE)
    # Nothing changed: the Owner token still works, and no new token appeared.
    still = await client.get("/api/v4/user", headers=h(token))
    assert still.status == 200
    count = await world.conn.fetchval("SELECT count(*) FROM personal_access_tokens "
                                      "WHERE previous_id = $1", token_id)
    assert count == 0


async def test_the_refused_rotation_cannot_be_used_to_add_an_owner(client, world: World) -> None:
    _, token_id, _ = await project_bot(world, world.project_id, OWNER)
    resp = await client.post(rotate_url(world, token_id), headers=h(world.tokens["maintainer"]))
    assert resp.status == 400
    assert "token" not in await resp.json()


async def test_maintainer_rotates_a_maintainer_token(client, world: World) -> None:
    old, token_id, _ = await project_bot(world, world.project_id, MAINTAINER)
    resp = await client.post(rotate_url(world, token_id), headers=h(world.tokens["maintainer"]))
    body = await resp.json()
    assert (resp.status, body["access_level"]) == (200, MAINTAINER)
    assert body["id"] != token_id and body["token"] != old


async def test_owner_rotates_an_owner_token(client, world: World) -> None:
    _, token_id, _ = await project_bot(world, world.project_id, OWNER)
    resp = await client.post(rotate_url(world, token_id), headers=h(world.tokens["owner"]))
    assert resp.status == 200


async def test_developer_may_not_rotate_even_a_developer_token(client, world: World) -> None:
    _, token_id, _ = await project_bot(world, world.project_id, DEVELOPER)
    resp = await client.post(rotate_url(world, token_id), headers=h(world.tokens["developer"]))
    assert (resp.status, await resp.json()) == (401, PLAIN_401)


async def test_administrator_rotates_any_token(client, world: World) -> None:
    _, token_id, _ = await project_bot(world, world.project_id, OWNER)
    resp = await client.post(rotate_url(world, token_id), headers=h(world.admin_token))
    assert resp.status == 200


async def test_group_maintainer_may_not_rotate_group_tokens(client, world: World) -> None:
    group = await acme_id(world)
    await group_member(world, group, "maintainer", MAINTAINER)
    _, token_id, _ = await group_bot(world, group, MAINTAINER)
    resp = await client.post(rotate_url(world, token_id, "groups"),
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (401, PLAIN_401)


async def test_owner_token_of_a_group_is_not_rotated_by_a_project_owner(client,
                                                                       world: World) -> None:
    """The project's Owner manages the project's tokens, not the group's."""
    group = await acme_id(world)
    _, token_id, _ = await group_bot(world, group, OWNER)
    resp = await client.post(rotate_url(world, token_id), headers=h(world.tokens["owner"]))
    assert resp.status == 404


async def test_owner_token_is_not_rotated_through_the_personal_token_route(client,
                                                                          world: World) -> None:
    _, token_id, _ = await project_bot(world, world.project_id, OWNER)
    resp = await client.post(f"/api/v4/personal_access_tokens/{token_id}/rotate",
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (401, PLAIN_401)


async def test_a_token_of_another_project_is_not_found_through_ones_own(client,
                                                                       world: World) -> None:
    other = await world.project("else", "where")
    _, token_id, _ = await project_bot(world, other, DEVELOPER)
    resp = await client.post(rotate_url(world, token_id), headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (404, {
        "message": f"404 Could not find project access token with token_id: {token_id} "
                   "Not Found"})


async def test_maintainer_bot_may_rotate_itself_but_not_an_owner_bot(client,
                                                                    world: World) -> None:
    bot, bot_token_id, _ = await project_bot(world, world.project_id, MAINTAINER)
    _, owner_token_id, _ = await project_bot(world, world.project_id, OWNER)
    own = await client.post(rotate_url(world, bot_token_id), headers=h(bot))
    assert own.status == 200
    fresh = (await own.json())["token"]
    other = await client.post(rotate_url(world, owner_token_id), headers=h(fresh))
    assert (other.status, await other.json()) == (400, NOT_ELIGIBLE)
