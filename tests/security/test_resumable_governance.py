"""Resumable uploads (tus, IETF) pass what a PUT passes: protection rules and quotas refuse a
session at its creation, again when the append that completes it commits, and a completed
upload is an audit event."""

from __future__ import annotations

from gateway import auth
from tests.conftest import World
from tests.package_helpers import generic_url, hdr

TUS = {"Tus-Resumable": "1.0.0"}
PROTECTED = {"message": "403 Forbidden - Package protected."}


def uploads(world: World, name: str = "tool") -> str:
    return generic_url(world.project_id, name=name) + "/uploads"


async def rule(world: World, push: int = auth.OWNER) -> None:
    await world.conn.execute(
        "INSERT INTO package_protection_rules (project_id, package_name_pattern, package_type,"
        " minimum_access_level_for_push) VALUES ($1, 'tool', 7, $2)", world.project_id, push)


async def create(client, world: World, length: int, token: str) -> tuple[int, str, dict]:
    resp = await client.post(uploads(world), headers={
        **TUS, **hdr(token), "Upload-Length": str(length)})
    body = await resp.json() if resp.content_type == "application/json" else {}
    return resp.status, resp.headers.get("Location", ""), body


async def test_protected_name_refuses_the_session(client, world: World) -> None:
    await rule(world)
    status, _, body = await create(client, world, 10, world.tokens["developer"])
    assert (status, body) == (403, PROTECTED)
    assert await world.conn.fetchval("SELECT count(*) FROM upload_sessions") == 0


async def test_declared_length_over_quota_refuses_the_session(client, world: World) -> None:
    await world.conn.execute("UPDATE projects SET packages_max_bytes = 5 WHERE id = $1",
                             world.project_id)
    status, _, body = await create(client, world, 10, world.tokens["developer"])
    assert (status, body) == (
        413, {"message": "413 Request Entity Too Large - storage quota exceeded"})


async def test_rule_made_during_the_session_refuses_its_completion(client, world: World) -> None:
    token = world.tokens["developer"]
    status, location, _ = await create(client, world, 10, token)
    assert status == 201
    await rule(world)
    resp = await client.patch(location, data=b"0123456789", headers={
        **TUS, **hdr(token), "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"})
    assert (resp.status, await resp.json()) == (403, PROTECTED)
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 0


async def test_completed_upload_is_an_audit_event(client, world: World) -> None:
    token = world.tokens["developer"]
    status, location, _ = await create(client, world, 3, token)
    assert status == 201
    resp = await client.patch(location, data=b"abc", headers={
        **TUS, **hdr(token), "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"})
    assert resp.status == 204
    assert await world.conn.fetchval(
        "SELECT count(*) FROM audit_events WHERE event_name = 'package_published'") == 1
