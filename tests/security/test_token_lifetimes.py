"""Hole 5: no token outlives GitLab's maximum lifetime (365 days, ``GATEWAY_MAX_TOKEN_LIFETIME_
DAYS``), created or rotated (``PersonalAccessToken#expires_at_before_instance_max_expiry_date``),
and a CI job token can be revoked (``DELETE /projects/:id/job_tokens/:id``, an extension)."""

from __future__ import annotations

import datetime as dt

from gateway.app import create_app
from gateway.enums import DEVELOPER
from tests.conftest import World
from tests.security.common import PLAIN_401, RECORD_NOT_FOUND, file_url, h, project_bot


def latest(days: int = 365) -> dt.date:
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)


def too_late(days: int = 365) -> str:
    return f"Expires at must be before {latest(days).isoformat()}"


async def test_a_personal_token_past_the_cap_is_refused(client, world: World) -> None:
    resp = await client.post("/api/v4/users/2/personal_access_tokens",
                             json={"name": "forever", "scopes": ["api"],
                                   "expires_at": "9999-12-31"},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (422, {"message": too_late()})
    assert await world.conn.fetchval(
        "SELECT count(*) FROM personal_access_tokens WHERE name = 'forever'") == 0


async def test_a_token_on_the_last_allowed_day_is_made(client, world: World) -> None:
    resp = await client.post("/api/v4/users/2/personal_access_tokens",
                             json={"name": "year", "scopes": ["api"],
                                   "expires_at": latest().isoformat()},
                             headers=h(world.admin_token))
    assert (resp.status, (await resp.json())["expires_at"]) == (201, latest().isoformat())


async def test_a_token_without_expiry_gets_the_maximum_lifetime(client, world: World) -> None:
    resp = await client.post("/api/v4/users/2/personal_access_tokens",
                             json={"name": "default", "scopes": ["api"]},
                             headers=h(world.admin_token))
    assert (await resp.json())["expires_at"] == latest().isoformat()


async def test_a_project_access_token_past_the_cap_is_refused(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/access_tokens",
                             json={"name": "bot", "scopes": ["api"], "access_level": 30,
                                   "expires_at": "9999-12-31"},
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (
        400, {"message": f"400 Bad request - {too_late()}"})
    assert await world.conn.fetchval("SELECT count(*) FROM users WHERE bot") == 0


async def test_rotation_past_the_cap_is_refused_and_keeps_the_old_token(client,
                                                                       world: World) -> None:
    token = world.tokens["developer"]
    resp = await client.post("/api/v4/personal_access_tokens/self/rotate",
                             json={"expires_at": "9999-12-31"}, headers=h(token))
    assert (resp.status, await resp.json()) == (
        400, {"message": f"400 Bad request - {too_late()}"})
    assert (await client.get("/api/v4/user", headers=h(token))).status == 200


async def test_resource_token_rotation_past_the_cap_is_refused(client, world: World) -> None:
    _, token_id, _ = await project_bot(world, world.project_id, DEVELOPER)
    resp = await client.post(
        f"/api/v4/projects/{world.project_id}/access_tokens/{token_id}/rotate",
        json={"expires_at": "2999-01-01"}, headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (
        400, {"message": f"400 Bad request - {too_late()}"})


async def test_the_cap_is_a_setting(aiohttp_client, settings, world: World) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(max_token_lifetime_days=30)))
    refused = await client.post("/api/v4/users/2/personal_access_tokens",
                                json={"name": "long", "scopes": ["api"],
                                      "expires_at": latest(31).isoformat()},
                                headers=h(world.admin_token))
    default = await client.post("/api/v4/users/2/personal_access_tokens",
                                json={"name": "short", "scopes": ["api"]},
                                headers=h(world.admin_token))
    assert (refused.status, await refused.json()) == (422, {"message": too_late(30)})
    assert (await default.json())["expires_at"] == latest(30).isoformat()


# --- revoking CI job tokens -------------------------------------------------------------------


async def _mint(client, world: World, token: str | None = None) -> dict:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/job_tokens",
                             json={"user_id": 4, "expires_in": 3600},
                             headers=h(token or world.tokens["maintainer"]))
    assert resp.status == 201
    return await resp.json()


async def test_a_revoked_job_token_stops_working(client, world: World) -> None:
    job = await _mint(client, world)
    before = await client.put(file_url(world.project_id), data=b"x",
                              headers={"JOB-TOKEN": job["token"]})
    revoked = await client.delete(f"/api/v4/projects/{world.project_id}/job_tokens/{job['id']}",
                                  headers=h(world.tokens["maintainer"]))
    after = await client.get(file_url(world.project_id), headers={"JOB-TOKEN": job["token"]},
                             allow_redirects=False)
    assert (before.status, revoked.status) == (201, 204)
    assert (after.status, await after.json()) == (401, PLAIN_401)


async def test_job_tokens_are_listed_without_their_secret(client, world: World) -> None:
    job = await _mint(client, world)
    resp = await client.get(f"/api/v4/projects/{world.project_id}/job_tokens",
                            headers=h(world.tokens["maintainer"]))
    listed = await resp.json()
    assert [j["id"] for j in listed] == [job["id"]]
    assert "token" not in listed[0] and job["token"] not in await resp.text()


async def test_a_developer_may_not_revoke_job_tokens(client, world: World) -> None:
    job = await _mint(client, world)
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/job_tokens/{job['id']}",
                               headers=h(world.tokens["developer"]))
    assert resp.status == 403


async def test_a_job_token_of_another_project_is_not_found_here(client, world: World) -> None:
    other = await world.project("else", "where")
    await world.member(5, 40, other)  # the maintainer of acme/tools maintains that one too
    minted = await client.post(f"/api/v4/projects/{other}/job_tokens",
                               json={"user_id": 4}, headers=h(world.tokens["maintainer"]))
    job = await minted.json()
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/job_tokens/{job['id']}",
                               headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (404, RECORD_NOT_FOUND)


async def test_a_job_token_cannot_revoke_or_mint_job_tokens(client, world: World) -> None:
    """Job tokens are no credential of the administration routes: anonymous there."""
    job = await _mint(client, world)
    headers = {"JOB-TOKEN": job["token"]}
    revoke = await client.delete(
        f"/api/v4/projects/{world.project_id}/job_tokens/{job['id']}", headers=headers)
    mint = await client.post(f"/api/v4/projects/{world.project_id}/job_tokens",
                             json={"user_id": 1}, headers=headers)
    assert (revoke.status, mint.status) == (401, 401)


async def test_deploy_tokens_are_no_credential_of_admin_routes(client, world: World) -> None:
    created = await client.post(f"/api/v4/projects/{world.project_id}/deploy_tokens",
                                json={"name": "d", "scopes": ["write_package_registry"]},
                                headers=h(world.tokens["maintainer"]))
    token = (await created.json())["token"]
    for method, url in (("POST", "/api/v4/users"), ("GET", "/api/v4/deploy_tokens"),
                        ("POST", f"/api/v4/projects/{world.project_id}/job_tokens"),
                        ("DELETE", f"/api/v4/projects/{world.project_id}")):
        resp = await client.request(method, url, headers={"Deploy-Token": token})
        assert (resp.status, await resp.json()) == (401, PLAIN_401), url
