"""Hole 2: the bot of a project or group access token belongs to its own project or group
only (``app/models/member.rb``: "project bots cannot be added to other groups / projects"),
whoever tries, by id or by username, alone or in a list."""

from __future__ import annotations

from gateway.enums import DEVELOPER, MAINTAINER
from tests.conftest import World
from tests.security.common import acme_id, file_url, group_bot, h, project_bot

BOT_REFUSED = {"message": {"user_id": ["project bots cannot be added to other groups / projects"]}}


async def _members_of(world: World, project_id: int) -> set[int]:
    rows = await world.conn.fetch("SELECT user_id FROM project_members WHERE project_id = $1",
                                  project_id)
    return {r["user_id"] for r in rows}


async def test_project_bot_is_not_added_to_another_project(client, world: World) -> None:
    other = await world.project("else", "where")
    token, _, bot = await project_bot(world, other, DEVELOPER)
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": bot, "access_level": MAINTAINER},
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (400, BOT_REFUSED)
    assert bot not in await _members_of(world, world.project_id)
    # ... and its token stays a stranger here.
    upload = await client.put(file_url(world.project_id), data=b"x", headers=h(token))
    assert upload.status == 404


async def test_not_even_an_administrator_adds_a_foreign_bot(client, world: World) -> None:
    other = await world.project("else", "where")
    _, _, bot = await project_bot(world, other, DEVELOPER)
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": bot, "access_level": DEVELOPER},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, BOT_REFUSED)


async def test_foreign_bot_by_username_is_refused(client, world: World) -> None:
    other = await world.project("else", "where")
    _, _, bot = await project_bot(world, other, DEVELOPER)
    username = await world.conn.fetchval("SELECT username FROM users WHERE id = $1", bot)
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"username": username, "access_level": DEVELOPER},
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (400, BOT_REFUSED)


async def test_a_list_with_a_foreign_bot_adds_nobody(client, world: World) -> None:
    other = await world.project("else", "where")
    _, _, bot = await project_bot(world, other, DEVELOPER)
    outsider = await world.conn.fetchval("SELECT id FROM users WHERE username = 'outsider'")
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             data={"user_id": f"{outsider},{bot}", "access_level": "30"},
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (400, BOT_REFUSED)
    assert outsider not in await _members_of(world, world.project_id)


async def test_group_bot_is_not_added_to_a_project_elsewhere(client, world: World) -> None:
    other_group = await world.conn.fetchval(
        "SELECT namespace_id FROM projects WHERE id = $1", await world.project("else", "where"))
    _, _, bot = await group_bot(world, other_group, DEVELOPER)
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": bot, "access_level": DEVELOPER},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, BOT_REFUSED)


async def test_project_bot_is_not_added_to_a_group(client, world: World) -> None:
    other = await world.project("else", "where")
    _, _, bot = await project_bot(world, other, DEVELOPER)
    resp = await client.post("/api/v4/groups/acme/members",
                             json={"user_id": bot, "access_level": DEVELOPER},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, BOT_REFUSED)


async def test_group_bot_is_not_made_a_direct_member_of_its_own_groups_project(
    client, world: World
) -> None:
    """A group's bot reaches the group's projects by inheritance; a direct membership would be
    a second one, which GitLab's uniqueness rule refuses too."""
    _, _, bot = await group_bot(world, await acme_id(world), DEVELOPER)
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": bot, "access_level": MAINTAINER},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, BOT_REFUSED)


async def test_own_bot_already_a_member_is_a_conflict(client, world: World) -> None:
    _, _, bot = await project_bot(world, world.project_id, DEVELOPER)
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": bot, "access_level": DEVELOPER},
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (409, {"message": "Member already exists"})


async def test_a_bots_level_is_not_changed_through_the_members_api(client, world: World) -> None:
    """``ProjectMemberPolicy``: ``~project_bot & can?(:admin_project_member)`` — a bot's role is
    the token's, changed by rotating or revoking it."""
    _, _, bot = await project_bot(world, world.project_id, DEVELOPER)
    resp = await client.put(f"/api/v4/projects/{world.project_id}/members/{bot}",
                            json={"access_level": MAINTAINER},
                            headers=h(world.tokens["maintainer"]))
    assert resp.status == 403
    level = await world.conn.fetchval(
        "SELECT access_level FROM project_members WHERE user_id = $1", bot)
    assert level == DEVELOPER
