"""Who reads audit events (GitLab's permissions): administrators the instance's; a project's
or group's Developers and up, who see only their own events below Maintainer / Owner;
nobody else, and never another project's events through a project they can read."""

from __future__ import annotations

import pytest

from gateway import auth
from tests.conftest import World
from tests.package_helpers import generic_url, hdr


async def publish(client, world: World, token: str, name: str = "pkg",
                  project_id: int | None = None) -> None:
    resp = await client.put(generic_url(project_id or world.project_id, name=name), data=b"x",
                            headers=hdr(token))
    assert resp.status == 201


@pytest.mark.parametrize("who", ["maintainer", "developer", "outsider"])
async def test_only_administrators_read_the_instance_events(client, world: World,
                                                           who: str) -> None:
    resp = await client.get("/api/v4/audit_events", headers=hdr(world.tokens[who]))
    assert (resp.status, await resp.json()) == (403, {"message": "403 Forbidden"})


async def test_anonymous_gets_401(client, world: World) -> None:
    for url in ("/api/v4/audit_events", f"/api/v4/projects/{world.project_id}/audit_events"):
        assert (await client.get(url)).status == 401


@pytest.mark.parametrize(("who", "status"), [("guest", 403), ("reporter", 403),
                                              ("outsider", 404)])
async def test_lower_roles_cannot_read_project_events(client, world: World, who: str,
                                                      status: int) -> None:
    resp = await client.get(f"/api/v4/projects/{world.project_id}/audit_events",
                            headers=hdr(world.tokens[who]))
    assert resp.status == status


async def test_developer_sees_only_their_own_events(client, world: World) -> None:
    await publish(client, world, world.tokens["developer"], "mine")
    await publish(client, world, world.tokens["maintainer"], "theirs")
    url = f"/api/v4/projects/{world.project_id}/audit_events"
    mine = await (await client.get(url, headers=hdr(world.tokens["developer"]))).json()
    assert [e["details"]["package_name"] for e in mine] == ["mine"]
    everything = await (await client.get(url, headers=hdr(world.tokens["maintainer"]))).json()
    assert {e["details"]["package_name"] for e in everything} == {"mine", "theirs"}
    theirs = next(e for e in everything if e["details"]["package_name"] == "theirs")
    resp = await client.get(f"{url}/{theirs['id']}", headers=hdr(world.tokens["developer"]))
    assert resp.status == 404


async def test_another_projects_event_is_not_found_through_this_project(client,
                                                                        world: World) -> None:
    other = await world.project("acme", "other")
    await publish(client, world, world.admin_token, "elsewhere", project_id=other)
    event_id = await world.conn.fetchval("SELECT id FROM audit_events")
    resp = await client.get(f"/api/v4/projects/{world.project_id}/audit_events/{event_id}",
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 404
    listed = await (await client.get(f"/api/v4/projects/{world.project_id}/audit_events",
                                     headers=hdr(world.tokens["maintainer"]))).json()
    assert listed == []


async def test_group_events_need_developer_and_owner_sees_all(client, world: World) -> None:
    group_id = await world.conn.fetchval("SELECT id FROM namespaces WHERE full_path = 'acme'")
    dev = await world.user("gdev")
    owner = await world.user("gowner")
    guest = await world.user("gguest")
    for user, level in ((dev, auth.DEVELOPER), (owner, auth.OWNER), (guest, auth.GUEST)):
        await world.conn.execute(
            "INSERT INTO group_members (group_id, user_id, access_level) VALUES ($1, $2, $3)",
            group_id, user.id, level)
    await client.put("/api/v4/groups/acme/packages/settings", headers=hdr(world.admin_token),
                     json={"generic_duplicates_allowed": False})
    url = "/api/v4/groups/acme/audit_events"
    assert (await client.get(url, headers=hdr(await world.token(guest.id)))).status == 403
    assert await (await client.get(url, headers=hdr(await world.token(dev.id)))).json() == []
    seen = await (await client.get(url, headers=hdr(await world.token(owner.id)))).json()
    assert [e["event_name"] for e in seen] == ["package_settings_updated"]


async def test_deploy_and_job_tokens_cannot_read_events(client, world: World) -> None:
    owner = await world.conn.fetchval("SELECT id FROM users WHERE username = 'owner'")
    job = {"JOB-TOKEN": await world.job_token(owner)}
    resp = await client.get(f"/api/v4/projects/{world.project_id}/audit_events", headers=job)
    assert resp.status == 401


async def test_deploy_token_publish_is_authored_as_gitlabs_deploy_token_author(
    client, world: World
) -> None:
    from gateway.identity import tokens
    issued = await tokens.issue_deploy_token(
        world.conn, project_id=world.project_id, name="d", scopes=["write_package_registry"],
        username="deployer", expires_at=None)
    resp = await client.put(generic_url(world.project_id), data=b"x",
                            headers={"Deploy-Token": issued.token})
    assert resp.status == 201
    row = await world.conn.fetchrow("SELECT author_id, author_name, details::text AS d"
                                    " FROM audit_events")
    assert (row["author_id"], row["author_name"]) == (-2, "deployer")
    assert issued.token not in row["d"]
