"""Audit events: what each change records (rows read through GitLab's audit events API and
JSON log lines), in GitLab's entity shape, and never a secret."""

from __future__ import annotations

import logging

import orjson
import pytest

from gateway.logs import JsonFormatter
from tests.conftest import World
from tests.package_helpers import generic_url, hdr


async def events(client, world: World, url: str | None = None, token: str | None = None,
                 **query) -> list[dict]:
    resp = await client.get(url or "/api/v4/audit_events", params=query,
                            headers=hdr(token or world.admin_token))
    assert resp.status == 200, await resp.text()
    return await resp.json()


def project_events(world: World) -> str:
    return f"/api/v4/projects/{world.project_id}/audit_events"


async def test_publish_records_gitlabs_audit_event_entity(client, world: World) -> None:
    resp = await client.put(generic_url(world.project_id, name="tool"), data=b"abc",
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    [event] = await events(client, world, project_events(world))
    developer = await world.conn.fetchval("SELECT id FROM users WHERE username = 'developer'")
    package_id = await world.conn.fetchval("SELECT id FROM packages")
    assert event == {
        "id": event["id"], "author_id": developer, "entity_id": world.project_id,
        "entity_type": "Project", "event_name": "package_published",
        "details": {
            "custom_message": "Published tool/1.0.0/file.txt", "author_name": "developer",
            "author_class": "User", "package_name": "tool", "package_version": "1.0.0",
            "file_name": "file.txt", "size": 3, "target_id": package_id,
            "target_type": "Packages::Package", "target_details": "tool",
            "ip_address": "127.0.0.1", "entity_path": "acme/tools",
        },
        "created_at": event["created_at"],
    }


async def test_refused_upload_records_nothing(client, world: World) -> None:
    await world.conn.execute(
        "INSERT INTO package_protection_rules (project_id, package_name_pattern, package_type,"
        " minimum_access_level_for_push) VALUES ($1, 'tool', 7, 50)", world.project_id)
    resp = await client.put(generic_url(world.project_id, name="tool"), data=b"abc",
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 403
    assert await world.conn.fetchval(
        "SELECT count(*) FROM audit_events WHERE event_name = 'package_published'") == 0


async def test_deletes_are_recorded(client, world: World) -> None:
    await client.put(generic_url(world.project_id, name="tool"), data=b"abc",
                     headers=hdr(world.tokens["developer"]))
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/packages/generic/tool/1.0.0",
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 204
    latest = (await events(client, world, project_events(world)))[0]
    assert latest["event_name"] == "package_deleted"
    assert latest["details"]["custom_message"] == "Deleted tool/1.0.0"


async def test_token_create_rotate_revoke_are_recorded_without_the_secret(
    client, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.audit")
    owner = await world.conn.fetchval("SELECT id FROM users WHERE username = 'owner'")
    resp = await client.post(f"/api/v4/users/{owner}/personal_access_tokens",
                             json={"name": "ci", "scopes": ["api"]},
                             headers=hdr(world.admin_token))
    created = await resp.json()
    resp = await client.post(f"/api/v4/personal_access_tokens/{created['id']}/rotate",
                             headers=hdr(world.admin_token))
    rotated = await resp.json()
    resp = await client.delete(f"/api/v4/personal_access_tokens/{rotated['id']}",
                               headers=hdr(world.admin_token))
    assert resp.status == 204
    found = await events(client, world, entity_type="User", entity_id=owner)
    assert [e["event_name"] for e in found] == [
        "personal_access_token_revoked", "personal_access_token_rotated",
        "personal_access_token_created"]
    assert found[2]["details"]["target_id"] == created["id"]
    assert found[1]["details"]["new_token_id"] == rotated["id"]
    rows = await world.conn.fetch("SELECT * FROM audit_events")
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "gateway.audit"]
    text = repr([dict(r) for r in rows]) + "\n".join(lines)
    for secret in (created["token"], rotated["token"]):
        assert secret not in text
    created_line = orjson.loads(next(x for x in lines if "personal_access_token_created" in x))
    assert created_line["audit"]["target_id"] == created["id"]


async def test_resource_deploy_and_job_tokens_are_recorded(client, world: World) -> None:
    base = f"/api/v4/projects/{world.project_id}"
    admin = hdr(world.admin_token)
    bot = await (await client.post(f"{base}/access_tokens", headers=admin, json={
        "name": "bot", "scopes": ["api"], "access_level": 30})).json()
    await client.delete(f"{base}/access_tokens/{bot['id']}", headers=admin)
    deploy = await (await client.post(f"{base}/deploy_tokens", headers=admin, json={
        "name": "d", "scopes": ["read_package_registry"]})).json()
    await client.delete(f"{base}/deploy_tokens/{deploy['id']}", headers=admin)
    owner = await world.conn.fetchval("SELECT id FROM users WHERE username = 'owner'")
    job = await (await client.post(f"{base}/job_tokens", headers=admin,
                                   json={"user_id": owner})).json()
    await client.delete(f"{base}/job_tokens/{job['id']}", headers=admin)
    names = [e["event_name"] for e in await events(client, world, project_events(world))]
    assert names == ["ci_job_token_revoked", "ci_job_token_created", "deploy_token_revoked",
                     "deploy_token_created", "project_access_token_revoked",
                     "project_access_token_created"]


async def test_member_changes_are_recorded(client, world: World) -> None:
    someone = await world.user("someone")
    url = f"/api/v4/projects/{world.project_id}/members"
    admin = hdr(world.admin_token)
    await client.post(url, json={"user_id": someone.id, "access_level": 30}, headers=admin)
    await client.put(f"{url}/{someone.id}", json={"access_level": 40}, headers=admin)
    await client.delete(f"{url}/{someone.id}", headers=admin)
    found = await events(client, world, project_events(world))
    assert [(e["event_name"], e["details"]["target_details"]) for e in found] == [
        ("member_destroyed", "someone"), ("member_updated", "someone"),
        ("member_created", "someone")]
    assert found[1]["details"]["access_level_from"] == 30
    assert found[1]["details"]["access_level"] == 40


async def test_rule_and_settings_changes_are_recorded(client, world: World) -> None:
    rules = f"/api/v4/projects/{world.project_id}/packages/protection/rules"
    m = hdr(world.tokens["maintainer"])
    rule = await (await client.post(rules, headers=m, json={
        "package_name_pattern": "x*", "package_type": "generic",
        "minimum_access_level_for_push": "owner"})).json()
    await client.patch(f"{rules}/{rule['id']}", headers=m,
                       json={"minimum_access_level_for_push": "maintainer"})
    await client.delete(f"{rules}/{rule['id']}", headers=m)
    names = [e["event_name"] for e in await events(client, world, project_events(world))]
    assert names == ["package_protection_rule_deleted", "package_protection_rule_updated",
                     "package_protection_rule_created"]
    resp = await client.put("/api/v4/groups/acme/packages/settings", headers=hdr(
        world.admin_token), json={"generic_duplicates_allowed": False})
    assert resp.status == 200
    [event] = await events(client, world, "/api/v4/groups/acme/audit_events")
    assert event["event_name"] == "package_settings_updated"
    assert event["details"]["generic_duplicates_allowed"] is False


async def test_created_after_and_pagination(client, world: World) -> None:
    for n in range(3):
        await client.put(generic_url(world.project_id, name=f"p{n}"), data=b"x",
                         headers=hdr(world.tokens["developer"]))
    resp = await client.get(project_events(world), params={"per_page": 2},
                            headers=hdr(world.admin_token))
    assert resp.headers["X-Total"] == "3"
    assert len(await resp.json()) == 2
    assert await events(client, world, project_events(world),
                        created_after="2999-01-01T00:00:00Z") == []
    resp = await client.get(project_events(world), params={"created_after": "yesterday"},
                            headers=hdr(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {"error": "created_after is invalid"})


async def test_one_event_by_id(client, world: World) -> None:
    await client.put(generic_url(world.project_id), data=b"x",
                     headers=hdr(world.tokens["developer"]))
    [event] = await events(client, world, project_events(world))
    resp = await client.get(f"{project_events(world)}/{event['id']}",
                            headers=hdr(world.admin_token))
    assert await resp.json() == event
    resp = await client.get(f"/api/v4/audit_events/{event['id']}",
                            headers=hdr(world.admin_token))
    assert await resp.json() == event
    resp = await client.get(f"{project_events(world)}/{event['id'] + 1}",
                            headers=hdr(world.admin_token))
    assert (resp.status, await resp.json()) == (404, {"message": "404 Not found"})
