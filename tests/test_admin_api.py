"""The administration API: GitLab's paths, bodies and status codes (GitLab's REST API),
spoken to in-process for the error cases, and by python-gitlab, curl and wget against
``gateway serve`` on a port for the operator's journey."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import warnings

import gitlab
import pytest

from gateway.identity import tokens
from tests.conftest import ROOT, World, start_gateway

PLAIN_401 = {"message": "401 Unauthorized"}
REVOKED = {"error": "invalid_token", "error_description":
           "Token was revoked. You have to re-authorize from the user."}
NEW_USER = {"email": "ci@x.io", "username": "ci", "name": "CI", "password": "S3cret-pass!",
            "skip_confirmation": True}


def h(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


# --- users and /user ---------------------------------------------------------------------------


async def test_current_user_for_admin_has_is_admin_and_web_url(client, world: World) -> None:
    resp = await client.get("/api/v4/user", headers=h(world.admin_token))
    body = await resp.json()
    assert resp.status == 200
    assert body["is_admin"] is True
    assert body["username"] == "root"
    assert body["web_url"] == f"http://{resp.url.host}:{resp.url.port}/root"


async def test_current_user_without_token_is_plain_401_without_packages_realm(
    client, world: World
) -> None:
    resp = await client.get("/api/v4/user")
    assert resp.status == 401
    assert await resp.json() == PLAIN_401
    assert "WWW-Authenticate" not in resp.headers


async def test_current_user_with_unknown_token_is_plain_401(client, world: World) -> None:
    resp = await client.get("/api/v4/user", headers=h("glpat-unknown"))
    assert (resp.status, await resp.json()) == (401, PLAIN_401)


async def test_current_user_with_revoked_token_is_oauth_401(client, world: World) -> None:
    issued = await tokens.issue_personal_access_token(world.conn, 2, "r", ["api"])
    token = issued.token
    await world.conn.execute("UPDATE personal_access_tokens SET revoked = true WHERE id = $1",
                             issued.record.id)
    resp = await client.get("/api/v4/user", headers=h(token))
    assert (resp.status, await resp.json()) == (401, REVOKED)
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="Protected by OAuth 2.0"')


async def test_current_user_accepts_a_read_user_token(client, world: World) -> None:
    token = await world.token(2, ["read_user"])
    resp = await client.get("/api/v4/user", headers=h(token))
    assert resp.status == 200
    assert "is_admin" not in await resp.json()


async def test_deploy_token_is_not_a_credential_of_the_admin_api(client, world: World) -> None:
    token, _ = await _deploy_token(
        world.conn, project_id=world.project_id, name="d", scopes=["read_package_registry"],
        expires_at=None, username=None)
    resp = await client.get("/api/v4/user", headers={"Deploy-Token": token})
    assert (resp.status, await resp.json()) == (401, PLAIN_401)


async def test_create_user_answers_201_with_the_user(client, world: World) -> None:
    resp = await client.post("/api/v4/users", json=NEW_USER, headers=h(world.admin_token))
    body = await resp.json()
    assert resp.status == 201
    assert (body["username"], body["email"], body["state"]) == ("ci", "ci@x.io", "active")
    assert isinstance(body["id"], int)


async def test_create_user_with_taken_username_is_409(client, world: World) -> None:
    await client.post("/api/v4/users", json=NEW_USER, headers=h(world.admin_token))
    resp = await client.post("/api/v4/users", json={**NEW_USER, "email": "other@x.io"},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (409, {"message": "Username has already been taken"})


async def test_create_user_with_taken_email_is_409_checked_first(client, world: World) -> None:
    await client.post("/api/v4/users", json=NEW_USER, headers=h(world.admin_token))
    resp = await client.post("/api/v4/users", json=NEW_USER, headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (409, {"message": "Email has already been taken"})


async def test_create_user_as_non_admin_is_403(client, world: World) -> None:
    resp = await client.post("/api/v4/users", json=NEW_USER, headers=h(world.tokens["owner"]))
    assert (resp.status, await resp.json()) == (403, {"message": "403 Forbidden"})


async def test_create_user_without_any_password_option_is_400(client, world: World) -> None:
    body = {k: v for k, v in NEW_USER.items() if k != "password"}
    resp = await client.post("/api/v4/users", json=body, headers=h(world.admin_token))
    assert resp.status == 400
    assert await resp.json() == {"error": "password, reset_password, force_random_password are "
                                          "missing, at least one parameter must be provided"}


async def test_create_user_with_short_password_is_validation_400(client, world: World) -> None:
    resp = await client.post("/api/v4/users", json={**NEW_USER, "password": "short"},
                             headers=h(world.admin_token))
    assert resp.status == 400
    assert await resp.json() == {
        "message": {"password": ["is too short (minimum is 8 characters)"]}}


async def test_create_user_from_form_fields(client, world: World) -> None:
    resp = await client.post("/api/v4/users", data={**NEW_USER, "skip_confirmation": "true"},
                             headers=h(world.admin_token))
    assert resp.status == 201


async def test_unknown_user_is_404_user_not_found(client, world: World) -> None:
    resp = await client.get("/api/v4/users/999999", headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (404, {"message": "404 User Not Found"})


async def test_users_list_is_paginated_with_link_headers(client, world: World) -> None:
    resp = await client.get("/api/v4/users?per_page=3", headers=h(world.admin_token))
    assert resp.status == 200
    assert len(await resp.json()) == 3
    assert resp.headers["X-Total"] == "7"
    assert resp.headers["X-Next-Page"] == "2"
    assert 'rel="next"' in resp.headers["Link"]


async def test_deleted_users_tokens_stop_working(client, world: World) -> None:
    uid = (await (await client.get("/api/v4/users?username=developer",
                                   headers=h(world.admin_token))).json())[0]["id"]
    resp = await client.delete(f"/api/v4/users/{uid}", headers=h(world.admin_token))
    after = await client.get("/api/v4/user", headers=h(world.tokens["developer"]))
    assert (resp.status, after.status) == (204, 401)


async def test_blocked_user_is_refused_with_the_reason(client, world: World) -> None:
    uid = (await (await client.get("/api/v4/users?username=developer",
                                   headers=h(world.admin_token))).json())[0]["id"]
    await client.post(f"/api/v4/users/{uid}/block", headers=h(world.admin_token))
    resp = await client.get("/api/v4/user", headers=h(world.tokens["developer"]))
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden - Your account has been blocked."}


# --- personal access tokens ------------------------------------------------------------------


async def test_admin_mints_a_token_shown_once(client, world: World) -> None:
    resp = await client.post("/api/v4/users/2/personal_access_tokens",
                             json={"name": "ci", "scopes": ["api"]}, headers=h(world.admin_token))
    body = await resp.json()
    assert resp.status == 201
    assert body["token"].startswith("glpat-")
    assert body["user_id"] == 2
    assert body["expires_at"] > "2026-01-01"
    listed = await (await client.get("/api/v4/personal_access_tokens?user_id=2",
                                     headers=h(world.admin_token))).json()
    assert listed and all("token" not in t for t in listed)


async def test_unknown_scope_is_400_not_a_valid_value(client, world: World) -> None:
    resp = await client.post("/api/v4/users/2/personal_access_tokens",
                             json={"name": "ci", "scopes": ["everything"]},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (
        400, {"error": "scopes does not have a valid value"})


async def test_revoked_token_answers_oauth_401(client, world: World) -> None:
    token = await world.token(2)
    me = await (await client.get("/api/v4/personal_access_tokens/self", headers=h(token))).json()
    resp = await client.delete(f"/api/v4/personal_access_tokens/{me['id']}",
                               headers=h(world.admin_token))
    after = await client.get("/api/v4/user", headers=h(token))
    assert resp.status == 204
    assert (after.status, await after.json()) == (401, REVOKED)


async def test_revoking_a_missing_token_is_404_not_found_lower_case(client, world: World) -> None:
    resp = await client.delete("/api/v4/personal_access_tokens/99999", headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (404, {"message": "404 Not found"})


async def test_revoking_someone_elses_token_is_400(client, world: World) -> None:
    resp = await client.delete("/api/v4/personal_access_tokens/1", headers=h(world.tokens["owner"]))
    assert (resp.status, await resp.json()) == (400, {"message": "400 Bad request"})


async def test_self_rotate_gives_a_new_token_and_retires_the_old(client, world: World) -> None:
    token = await world.token(2)
    resp = await client.post("/api/v4/personal_access_tokens/self/rotate", headers=h(token))
    body = await resp.json()
    old = await client.get("/api/v4/user", headers=h(token))
    new = await client.get("/api/v4/user", headers=h(body["token"]))
    assert resp.status == 200
    assert (old.status, new.status) == (401, 200)


# --- groups and projects -----------------------------------------------------------------------


async def test_group_path_taken_is_400_failed_to_save(client, world: World) -> None:
    first = await client.post("/api/v4/groups", json={"name": "g", "path": "g"},
                              headers=h(world.admin_token))
    again = await client.post("/api/v4/groups", json={"name": "g", "path": "g"},
                              headers=h(world.admin_token))
    assert first.status == 201
    assert again.status == 400
    assert (await again.json())["message"].startswith("Failed to save group")


async def test_subgroup_has_nested_full_path(client, world: World) -> None:
    acme = await (await client.get("/api/v4/groups/acme", headers=h(world.admin_token))).json()
    resp = await client.post("/api/v4/groups", json={"name": "Sub", "path": "sub",
                                                     "parent_id": acme["id"]},
                             headers=h(world.admin_token))
    body = await resp.json()
    assert (body["full_path"], body["full_name"], body["parent_id"]) == (
        "acme/sub", "acme / Sub", acme["id"])
    found = await client.get("/api/v4/groups/acme%2Fsub", headers=h(world.admin_token))
    assert (await found.json())["id"] == body["id"]


async def test_project_in_a_group_then_found_by_encoded_path(client, world: World) -> None:
    gid = (await (await client.get("/api/v4/groups/acme", headers=h(world.admin_token)))
           .json())["id"]
    resp = await client.post("/api/v4/projects", json={"name": "lib", "namespace_id": gid},
                             headers=h(world.admin_token))
    body = await resp.json()
    assert resp.status == 201
    assert (body["path_with_namespace"], body["namespace"]["id"], body["visibility"]) == (
        "acme/lib", gid, "private")
    got = await client.get("/api/v4/projects/ACME%2Flib", headers=h(world.admin_token))
    assert (await got.json())["id"] == body["id"]


async def test_project_without_namespace_lands_in_the_callers_namespace(client,
                                                                         world: World) -> None:
    resp = await client.post("/api/v4/projects", json={"name": "Mine Too"},
                             headers=h(world.tokens["outsider"]))
    body = await resp.json()
    assert resp.status == 201
    assert body["path_with_namespace"] == "outsider/mine-too"
    assert body["namespace"]["kind"] == "user"
    assert body["owner"]["username"] == "outsider"


async def test_personal_project_owner_can_publish(client, world: World) -> None:
    body = await (await client.post("/api/v4/projects", json={"name": "p"},
                                    headers=h(world.tokens["outsider"]))).json()
    resp = await client.put(f"/api/v4/projects/{body['id']}/packages/generic/a/1/a.txt",
                            data=b"a", headers=h(world.tokens["outsider"]))
    assert resp.status == 201


async def test_project_taken_is_400_with_field_errors(client, world: World) -> None:
    resp = await client.post("/api/v4/projects", json={"name": "tools", "namespace_id": 2},
                             headers=h(world.admin_token))
    assert resp.status == 400
    assert (await resp.json())["message"]["path"] == ["has already been taken"]


async def test_project_in_a_group_without_rights_is_namespace_not_valid(client,
                                                                         world: World) -> None:
    resp = await client.post("/api/v4/projects", json={"name": "x", "namespace_id": 2},
                             headers=h(world.tokens["outsider"]))
    assert (resp.status, await resp.json()) == (400, {"message": {"namespace": ["is not valid"]}})


async def test_project_without_name_or_path_is_400(client, world: World) -> None:
    resp = await client.post("/api/v4/projects", json={}, headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (
        400, {"error": "name, path are missing, at least one parameter must be provided"})


async def test_invisible_project_is_404_project_not_found(client, world: World) -> None:
    resp = await client.get(f"/api/v4/projects/{world.project_id}",
                            headers=h(world.tokens["outsider"]))
    assert (resp.status, await resp.json()) == (404, {"message": "404 Project Not Found"})


async def test_switching_the_registry_off_makes_uploads_403(client, world: World) -> None:
    resp = await client.put(f"/api/v4/projects/{world.project_id}",
                            json={"package_registry_access_level": "disabled"},
                            headers=h(world.tokens["maintainer"]))
    body = await resp.json()
    upload = await client.put(
        f"/api/v4/projects/{world.project_id}/packages/generic/a/1/a.txt", data=b"a",
        headers=h(world.tokens["developer"]))
    assert resp.status == 200
    assert body["packages_enabled"] is False
    assert (upload.status, await upload.json()) == (403, {"message": "403 Forbidden"})


async def test_developer_may_not_change_the_project(client, world: World) -> None:
    resp = await client.put(f"/api/v4/projects/{world.project_id}", json={"description": "x"},
                            headers=h(world.tokens["developer"]))
    assert (resp.status, await resp.json()) == (403, {"message": "403 Forbidden"})


async def test_owner_deletes_project_with_202_then_it_is_gone(client, world: World) -> None:
    resp = await client.delete(f"/api/v4/projects/{world.project_id}",
                               headers=h(world.tokens["owner"]))
    after = await client.get(f"/api/v4/projects/{world.project_id}",
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (202, {"message": "202 Accepted"})
    assert after.status == 404


async def test_maintainer_may_not_delete_the_project(client, world: World) -> None:
    resp = await client.delete(f"/api/v4/projects/{world.project_id}",
                               headers=h(world.tokens["maintainer"]))
    assert resp.status == 403


async def test_anonymous_sees_only_public_projects(client, world: World) -> None:
    await world.project("pub", "lib", "public")
    resp = await client.get("/api/v4/projects")
    assert [p["path_with_namespace"] for p in await resp.json()] == ["pub/lib"]


# --- members -------------------------------------------------------------------------------------


async def test_member_added_then_409_on_repeat(client, world: World) -> None:
    url = f"/api/v4/projects/{world.project_id}/members"
    first = await client.post(url, json={"user_id": 7, "access_level": 30},
                              headers=h(world.tokens["maintainer"]))
    again = await client.post(url, json={"user_id": 7, "access_level": 30},
                              headers=h(world.tokens["maintainer"]))
    body = await first.json()
    assert (first.status, body["id"], body["access_level"]) == (201, 7, 30)
    assert (again.status, await again.json()) == (409, {"message": "Member already exists"})


async def test_member_by_username(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"username": "outsider", "access_level": 20},
                             headers=h(world.admin_token))
    assert (await resp.json())["username"] == "outsider"


async def test_unknown_member_user_is_404_user_not_found(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": 999999, "access_level": 30},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (404, {"message": "404 User Not Found"})


async def test_invalid_access_level_is_not_included_in_the_list(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": 7, "access_level": 35},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (
        400, {"message": {"access_level": ["is not included in the list"]}})


async def test_both_user_id_and_username_are_mutually_exclusive(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": 7, "username": "outsider", "access_level": 30},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (
        400, {"error": "user_id, username are mutually exclusive"})


async def test_developer_may_not_add_members(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": 7, "access_level": 10},
                             headers=h(world.tokens["developer"]))
    assert resp.status == 403


async def test_maintainer_may_not_make_an_owner(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             json={"user_id": 7, "access_level": 50},
                             headers=h(world.tokens["maintainer"]))
    assert resp.status == 403


async def test_member_removed_with_204(client, world: World) -> None:
    resp = await client.delete(f"/api/v4/projects/{world.project_id}/members/5",
                               headers=h(world.admin_token))
    again = await client.delete(f"/api/v4/projects/{world.project_id}/members/5",
                                headers=h(world.admin_token))
    assert resp.status == 204
    assert (again.status, await again.json()) == (404, {"message": "404 Not found"})


async def test_all_members_include_the_group_owner_inherited(client, world: World) -> None:
    direct = await (await client.get(f"/api/v4/projects/{world.project_id}/members",
                                     headers=h(world.admin_token))).json()
    every = await (await client.get(f"/api/v4/projects/{world.project_id}/members/all",
                                    headers=h(world.admin_token))).json()
    assert "root" not in {m["username"] for m in direct}
    assert {"root": 50}.items() <= {m["username"]: m["access_level"] for m in every}.items()


async def test_group_member_gains_access_to_the_groups_projects(client, world: World) -> None:
    await client.post("/api/v4/groups/acme/members", json={"user_id": 7, "access_level": 30},
                      headers=h(world.admin_token))
    resp = await client.put(f"/api/v4/projects/{world.project_id}/packages/generic/a/1/a.txt",
                            data=b"a", headers=h(world.tokens["outsider"]))
    assert resp.status == 201


# --- deploy tokens and project access tokens ---------------------------------------------------


async def test_deploy_token_created_once_then_listed_without_secret(client, world: World) -> None:
    url = f"/api/v4/projects/{world.project_id}/deploy_tokens"
    resp = await client.post(url, json={"name": "ci", "scopes": ["read_package_registry",
                                                                 "write_package_registry"]},
                             headers=h(world.tokens["maintainer"]))
    body = await resp.json()
    listed = await (await client.get(url, headers=h(world.tokens["maintainer"]))).json()
    everywhere = await (await client.get("/api/v4/deploy_tokens",
                                         headers=h(world.admin_token))).json()
    assert resp.status == 201
    assert body["token"].startswith("gldt-")
    assert body["username"] == f"gitlab+deploy-token-{body['id']}"
    assert body["expires_at"] is None
    assert [t["id"] for t in listed] == [body["id"]] == [t["id"] for t in everywhere]
    assert "token" not in listed[0]


async def test_deploy_token_with_unknown_scope_is_400(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/deploy_tokens",
                             json={"name": "ci", "scopes": ["write_everything"]},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (
        400, {"error": "scopes does not have a valid value"})


async def test_developer_may_not_create_deploy_tokens(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/deploy_tokens",
                             json={"name": "ci", "scopes": ["read_package_registry"]},
                             headers=h(world.tokens["developer"]))
    assert resp.status == 403


async def test_deleted_deploy_token_no_longer_uploads(client, world: World) -> None:
    url = f"/api/v4/projects/{world.project_id}/deploy_tokens"
    body = await (await client.post(url, json={"name": "d", "scopes": "write_package_registry"},
                                    headers=h(world.admin_token))).json()
    await client.delete(f"{url}/{body['id']}", headers=h(world.admin_token))
    resp = await client.put(f"/api/v4/projects/{world.project_id}/packages/generic/a/1/a.txt",
                            data=b"a", headers={"Deploy-Token": body["token"]})
    assert resp.status == 401


async def test_project_access_token_is_a_bot_member(client, world: World) -> None:
    url = f"/api/v4/projects/{world.project_id}/access_tokens"
    resp = await client.post(url, json={"name": "bot", "scopes": ["api"], "access_level": 30},
                             headers=h(world.tokens["maintainer"]))
    body = await resp.json()
    members = await (await client.get(f"/api/v4/projects/{world.project_id}/members",
                                      headers=h(world.admin_token))).json()
    assert resp.status == 201
    assert (body["access_level"], body["resource_type"], body["resource_id"]) == (
        30, "project", world.project_id)
    assert body["token"].startswith("glpat-")
    assert body["user_id"] in {m["id"] for m in members}


async def test_project_access_token_above_the_callers_level_is_400(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/access_tokens",
                             json={"name": "bot", "scopes": ["api"], "access_level": 50},
                             headers=h(world.tokens["maintainer"]))
    assert resp.status == 400
    assert (await resp.json())["message"].startswith("400 Bad request - ")


async def test_revoked_project_access_token_is_refused(client, world: World) -> None:
    url = f"/api/v4/projects/{world.project_id}/access_tokens"
    body = await (await client.post(url, json={"name": "b", "scopes": ["api"]},
                                    headers=h(world.admin_token))).json()
    gone = await client.delete(f"{url}/{body['id']}", headers=h(world.admin_token))
    resp = await client.get("/api/v4/user", headers=h(body["token"]))
    missing = await client.get(f"{url}/999", headers=h(world.admin_token))
    assert gone.status == 204
    assert (resp.status, await resp.json()) == (401, REVOKED)
    assert await missing.json() == {
        "message": "404 Could not find project access token with token_id: 999 Not Found"}


async def test_job_token_minted_by_maintainer_acts_for_its_user(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/job_tokens",
                             json={"user_id": 4, "expires_in": 600},
                             headers=h(world.tokens["maintainer"]))
    body = await resp.json()
    upload = await client.put(f"/api/v4/projects/{world.project_id}/packages/generic/a/1/a.txt",
                              data=b"a", headers={"JOB-TOKEN": body["token"]})
    assert resp.status == 201
    assert body["token"].startswith("glcbt-")
    assert upload.status == 201


async def test_developer_may_not_mint_job_tokens(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/job_tokens",
                             json={"user_id": 4}, headers=h(world.tokens["developer"]))
    assert resp.status == 403


# --- python-gitlab, curl and wget against `gateway serve` --------------------------------------


def bootstrap_token(env: dict[str, str]) -> str:
    """``gateway admin bootstrap``: the operator's first token, the last line of stdout."""
    out = subprocess.run([sys.executable, "-m", "gateway", "admin", "bootstrap"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def fresh(settings, tmp_path, db):
    """A gateway on a port over an empty database."""
    gw = start_gateway(settings, tmp_path)
    yield gw, bootstrap_token(gw.env)
    gw.stop()


def test_python_gitlab_administers_a_fresh_gateway_end_to_end(fresh, tmp_path) -> None:
    gw, admin_token = fresh
    gl = gitlab.Gitlab(gw.url, private_token=admin_token)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "base URL differs" warning
        gl.auth()
    assert gl.user.username == "root"

    group = gl.groups.create({"name": "acme", "path": "acme"})
    project = gl.projects.create({"name": "tools", "path": "tools", "namespace_id": group.id})
    assert gl.projects.get("acme/tools").id == project.id

    users = {
        name: gl.users.create({"email": f"{name}@x.io", "username": name, "name": name.title(),
                               "password": "S3cret-pass!", "skip_confirmation": True})
        for name in ("dev", "rep", "stranger")
    }
    with pytest.raises(gitlab.GitlabCreateError) as taken:
        gl.users.create({"email": "other@x.io", "username": "dev", "name": "D",
                         "password": "S3cret-pass!"})
    assert (taken.value.response_code, taken.value.error_message) == (
        409, "Username has already been taken")
    assert project.members.create({"user_id": users["dev"].id, "access_level": 30}).access_level \
        == 30
    project.members.create({"user_id": users["rep"].id, "access_level": 20})

    def client_of(user: str) -> gitlab.Gitlab:
        token = users[user].personal_access_tokens.create({"name": "t", "scopes": ["api"]}).token
        return gitlab.Gitlab(gw.url, private_token=token)

    def upload(gl_: gitlab.Gitlab, name: str = "a.txt") -> object:
        return gl_.projects.get(project.id, lazy=True).generic_packages.upload(
            package_name="tool", package_version="1.0", file_name=name, data=b"abc")

    assert upload(client_of("dev")).message == "201 Created"
    with pytest.raises(gitlab.GitlabUploadError) as refused:
        upload(client_of("rep"))
    assert refused.value.response_code == 403
    with pytest.raises(gitlab.GitlabUploadError) as hidden:
        upload(client_of("stranger"))
    assert hidden.value.response_code == 404

    writer = project.deploytokens.create({"name": "w", "scopes": ["write_package_registry"]})
    reader = project.deploytokens.create({"name": "r", "scopes": ["read_package_registry"]})
    assert writer.username.startswith("gitlab+deploy-token-")
    assert upload(gitlab.Gitlab(gw.url, http_username="ci", http_password=writer.token),
                  "d.txt").message == "201 Created"
    reading = gitlab.Gitlab(gw.url, http_username="ci", http_password=reader.token)
    assert reading.projects.get(project.id, lazy=True).generic_packages.download(
        package_name="tool", package_version="1.0", file_name="d.txt") == b"abc"
    with pytest.raises(gitlab.GitlabUploadError) as read_only:
        upload(reading, "r.txt")
    assert read_only.value.response_code == 403

    bot = project.access_tokens.create({"name": "bot", "scopes": ["api"], "access_level": 30})
    assert (bot.access_level, bool(bot.user_id)) == (30, True)
    bot_gl = gitlab.Gitlab(gw.url, private_token=bot.token)
    assert upload(bot_gl, "b.txt").message == "201 Created"
    weak = project.access_tokens.create({"name": "weak", "scopes": ["api"], "access_level": 20})
    with pytest.raises(gitlab.GitlabUploadError) as too_weak:
        upload(gitlab.Gitlab(gw.url, private_token=weak.token), "w.txt")
    assert too_weak.value.response_code == 403
    other = gl.projects.create({"name": "other", "namespace_id": group.id})
    with pytest.raises(gitlab.GitlabUploadError) as elsewhere:
        bot_gl.projects.get(other.id, lazy=True).generic_packages.upload(
            package_name="tool", package_version="1.0", file_name="x.txt", data=b"x")
    assert elsewhere.value.response_code == 404

    project.access_tokens.delete(bot.id)
    with pytest.raises(gitlab.GitlabAuthenticationError):
        upload(bot_gl, "after.txt")

    dev_token = users["dev"].personal_access_tokens.create({"name": "r", "scopes": ["api"]})
    gl.personal_access_tokens.delete(dev_token.id)
    with pytest.raises(gitlab.GitlabAuthenticationError) as revoked:
        gitlab.Gitlab(gw.url, private_token=dev_token.token).auth()
    assert revoked.value.error_message == "invalid_token"

    assert len(gl.users.list(get_all=True, per_page=2, without_project_bots=True)) == 4
    assert "token" not in gl.personal_access_tokens.list(get_all=True)[0].attributes


def test_seed_job_token_lines_work_with_a_minted_job_token(fresh, tmp_path) -> None:
    """The seed page's CI job: ``JOB-TOKEN`` upload with curl, download with wget, and the
    ``gitlab-ci-token`` Basic form for both."""
    gw, admin_token = fresh
    gl = gitlab.Gitlab(gw.url, private_token=admin_token)
    group = gl.groups.create({"name": "ci", "path": "ci"})
    project = gl.projects.create({"name": "app", "namespace_id": group.id})
    dev = gl.users.create({"email": "d@x.io", "username": "d", "name": "D",
                           "password": "S3cret-pass!"})
    project.members.create({"user_id": dev.id, "access_level": 30})
    minted = gl.http_post(f"/projects/{project.id}/job_tokens", post_data={"user_id": dev.id})
    job = minted["token"]
    api = f"{gw.url}/api/v4"
    (tmp_path / "path" / "to").mkdir(parents=True)
    (tmp_path / "path/to/file.txt").write_bytes(b"hello from CI\n")
    base = f"{api}/projects/{project.id}/packages/generic/my_package/0.0.1"

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    up = run("curl", "--fail-with-body", "--header", f"JOB-TOKEN: {job}", "--upload-file",
             "path/to/file.txt", f"{base}/file.txt")
    assert up.returncode == 0, up.stdout + up.stderr
    assert up.stdout == '{"message":"201 Created"}'
    got = run("wget", f"--header=JOB-TOKEN: {job}", f"{base}/file.txt")
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "file.txt").read_bytes() == b"hello from CI\n"
    basic_up = run("curl", "--fail-with-body", "--user", f"gitlab-ci-token:{job}",
                   "--upload-file", "path/to/file.txt", f"{base}/second.txt")
    assert basic_up.returncode == 0, basic_up.stdout
    basic_down = run("curl", "--fail-with-body", "--location", "--output", "second.txt",
                     "--user", f"gitlab-ci-token:{job}", f"{base}/second.txt")
    assert basic_down.returncode == 0, basic_down.stdout
    assert (tmp_path / "second.txt").read_bytes() == b"hello from CI\n"
    header_down = run("curl", "--fail-with-body", "--location", "--output", "third.txt",
                      "--header", f"JOB-TOKEN: {job}", f"{base}/file.txt")
    assert header_down.returncode == 0
    assert job not in gw.log()


async def test_group_access_token_reaches_every_project_of_the_group(client,
                                                                     world: World) -> None:
    resp = await client.post("/api/v4/groups/acme/access_tokens",
                             json={"name": "g", "scopes": ["api"], "access_level": 30},
                             headers=h(world.admin_token))
    body = await resp.json()
    upload = await client.put(
        f"/api/v4/projects/{world.project_id}/packages/generic/a/1/a.txt", data=b"a",
        headers=h(body["token"]))
    assert (resp.status, body["resource_type"]) == (201, "group")
    assert upload.status == 201


async def test_maintainer_may_not_create_group_access_tokens(client, world: World) -> None:
    await client.post("/api/v4/groups/acme/members", json={"user_id": 5, "access_level": 40},
                      headers=h(world.admin_token))
    resp = await client.post("/api/v4/groups/acme/access_tokens",
                             json={"name": "g", "scopes": ["api"]},
                             headers=h(world.tokens["maintainer"]))
    assert resp.status == 403


async def test_group_deploy_token_from_the_api_pushes_to_the_groups_project(
    client, world: World
) -> None:
    resp = await client.post("/api/v4/groups/acme/deploy_tokens",
                             json={"name": "g", "scopes": ["write_package_registry"]},
                             headers=h(world.admin_token))
    token = (await resp.json())["token"]
    upload = await client.put(
        f"/api/v4/projects/{world.project_id}/packages/generic/a/1/a.txt", data=b"a",
        headers={"Deploy-Token": token})
    assert (resp.status, upload.status) == (201, 201)


async def test_expired_token_answers_oauth_401_on_the_admin_api(client, world: World) -> None:
    token = await world.token(2, expires_at=dt.date(2020, 1, 1))
    resp = await client.get("/api/v4/projects", headers=h(token))
    assert resp.status == 401
    assert await resp.json() == {
        "error": "invalid_token", "error_description":
        "Token is expired. You can either do re-authorization or token refresh."}


async def test_read_api_token_may_read_but_not_create(client, world: World) -> None:
    token = await world.token(1, ["read_api"])
    read = await client.get("/api/v4/projects", headers=h(token))
    write = await client.post("/api/v4/groups", json={"name": "n", "path": "n"},
                              headers=h(token))
    assert read.status == 200
    assert (write.status, (await write.json())["error"]) == (403, "insufficient_scope")


async def test_token_use_is_recorded_as_last_used_at(client, world: World) -> None:
    token = await world.token(2)
    await client.get("/api/v4/user", headers=h(token))
    listed = await (await client.get("/api/v4/personal_access_tokens?user_id=2",
                                     headers=h(world.admin_token))).json()
    assert [t["last_used_at"] is not None for t in listed][-1]


async def test_minimal_access_group_member_sees_the_group_not_its_projects(
    client, world: World
) -> None:
    added = await client.post("/api/v4/groups/acme/members",
                              json={"user_id": 7, "access_level": 5},
                              headers=h(world.admin_token))
    group = await client.get("/api/v4/groups/acme", headers=h(world.tokens["outsider"]))
    projects = await client.get("/api/v4/projects", headers=h(world.tokens["outsider"]))
    assert (added.status, group.status) == (201, 200)
    assert await projects.json() == []


async def test_user_save_resending_its_own_email_and_username_succeeds(client,
                                                                        world: World) -> None:
    """python-gitlab's ``user.save()`` always re-sends email, username and name."""
    resp = await client.put("/api/v4/users/2", headers=h(world.admin_token), json={
        "email": "guest@example.com", "username": "guest", "name": "Guest", "note": "on call"})
    body = await resp.json()
    assert (resp.status, body["note"], body["username"]) == (200, "on call", "guest")


async def test_user_update_to_anothers_email_is_409(client, world: World) -> None:
    resp = await client.put("/api/v4/users/2", json={"email": "owner@example.com"},
                            headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (409, {"message": "Email has already been taken"})


async def test_anonymous_may_look_a_user_up_by_username_only(client, world: World) -> None:
    found = await client.get("/api/v4/users?username=Guest")
    listing = await client.get("/api/v4/users")
    assert [u["username"] for u in await found.json()] == ["guest"]
    assert listing.status == 403


async def test_renaming_a_group_path_moves_its_subgroups_and_projects(client,
                                                                       world: World) -> None:
    acme = await (await client.get("/api/v4/groups/acme", headers=h(world.admin_token))).json()
    await client.post("/api/v4/groups", json={"name": "sub", "path": "sub",
                                              "parent_id": acme["id"]},
                      headers=h(world.admin_token))
    resp = await client.put(f"/api/v4/groups/{acme['id']}", json={"path": "acme-corp"},
                            headers=h(world.admin_token))
    sub = await client.get("/api/v4/groups/acme-corp%2Fsub", headers=h(world.admin_token))
    project = await client.get("/api/v4/projects/acme-corp%2Ftools",
                               headers=h(world.admin_token))
    assert resp.status == 200
    assert (sub.status, project.status) == (200, 200)


async def test_external_user_does_not_see_internal_projects(client, world: World) -> None:
    pid = await world.project("corp", "int", "internal")
    await world.conn.execute("UPDATE users SET external = true WHERE username = 'outsider'")
    resp = await client.get(f"/api/v4/projects/{pid}", headers=h(world.tokens["outsider"]))
    assert resp.status == 404


async def _deploy_token(conn, **kw):
    issued = await tokens.issue_deploy_token(conn, **kw)
    return issued.token, issued.record
