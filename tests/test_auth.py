"""Who may read and write generic package files: GitLab's authorization matrix.

Each cell is one test: a credential (kind, scope and role) used on a private, internal or public
project, to read (GET of an existing file) or write (PUT of a new one). A successful read is
the gateway's redirect to the bucket (302), which GitLab's table lists as 200.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field

import pytest

from gateway import auth
from gateway.db.identity import groups as group_queries
from gateway.identity import seed, tokens
from tests.conftest import ROLES, World

FILE = "/api/v4/projects/{pid}/packages/generic/pkg/1.0/{name}"
PLAIN_401 = {"message": "401 Unauthorized"}
PACKAGES_REALM = 'Basic realm="GitLab Packages Registry"'
EXPIRED = {"error": "invalid_token", "error_description":
           "Token is expired. You can either do re-authorization or token refresh."}
REVOKED = {"error": "invalid_token", "error_description":
           "Token was revoked. You have to re-authorize from the user."}
SCOPE_403 = {"error": "insufficient_scope", "error_description":
             "The request requires higher privileges than provided by the access token.",
             "scope": "api read_api"}
FORBIDDEN = {"message": "403 Forbidden"}
NOT_FOUND = {"message": "404 Not Found"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Instance:
    """``world`` plus an internal and a public project whose members hold the same roles."""

    world: World
    projects: dict[str, int] = field(default_factory=dict)  # visibility -> project id
    users: dict[str, int] = field(default_factory=dict)  # role -> user id
    other_project: int = 0


@pytest.fixture
async def instance(client, world: World) -> Instance:
    inst = Instance(world)
    inst.projects["private"] = world.project_id
    inst.projects["internal"] = await world.project("corp", "int", "internal")
    inst.projects["public"] = await world.project("pub", "lib", "public")
    inst.other_project = await world.project("else", "where")
    for role in [*ROLES, "outsider"]:
        row = await world.conn.fetchrow("SELECT id FROM users WHERE username = $1", role)
        inst.users[role] = row["id"]
        if role in ROLES:
            for pid in (inst.projects["internal"], inst.projects["public"], inst.other_project):
                await world.member(row["id"], ROLES[role], pid)
    for pid in inst.projects.values():
        resp = await client.put(FILE.format(pid=pid, name="f.txt"), data=b"data",
                                headers={"PRIVATE-TOKEN": world.admin_token})
        assert resp.status == 201
    return inst


async def credential(inst: Instance, kind: str, pid: int) -> dict[str, str]:
    """Request headers for a credential described as ``kind:detail``."""
    w, conn = inst.world, inst.world.conn
    kind, _, detail = kind.partition(":")
    if kind == "none":
        return {}
    if kind == "pat":  # pat:<scope>:<role>
        scope, _, role = detail.partition(":")
        return {"PRIVATE-TOKEN": await w.token(inst.users[role], [scope])}
    if kind == "pat-expired":
        yesterday = dt.date.today() - dt.timedelta(days=1)
        return {"PRIVATE-TOKEN": await w.token(inst.users["developer"], expires_at=yesterday)}
    if kind == "pat-revoked":
        issued = await tokens.issue_personal_access_token(
            conn, inst.users["developer"], "r", ["api"])
        await conn.execute("UPDATE personal_access_tokens SET revoked = true WHERE id = $1",
                           issued.record.id)
        return {"PRIVATE-TOKEN": issued.token}
    if kind == "pat-unknown":
        return {"PRIVATE-TOKEN": "glpat-doesnotexist0000000"}
    if kind == "deploy":  # deploy:<scopes>[:other|expired|revoked]
        scopes, _, state = detail.partition(":")
        issued = await tokens.issue_deploy_token(
            conn, project_id=inst.other_project if state == "other" else pid, name="d",
            scopes=scopes.split("+"), username=None,
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            if state == "expired" else None,
        )
        if state == "revoked":
            await conn.execute("UPDATE deploy_tokens SET revoked = true WHERE id = $1",
                               issued.record.id)
        return {"Deploy-Token": issued.token}
    if kind == "deploy-unknown":
        return {"Deploy-Token": "gldt-doesnotexist00000000"}
    if kind == "job":  # job:<role>[:other|finished]
        role, _, state = detail.partition(":")
        issued = await tokens.issue_job_token(
            conn, inst.other_project if state == "other" else pid, inst.users[role],
            -10 if state == "finished" else 3600,
        )
        return {"JOB-TOKEN": issued.token}
    if kind == "job-unknown":
        return {"JOB-TOKEN": "glcbt-doesnotexist0000000"}
    if kind == "basic-ci":  # the job token over Basic, user gitlab-ci-token
        issued = await tokens.issue_job_token(conn, pid, inst.users[detail], 3600)
        return basic("gitlab-ci-token", issued.token)
    if kind == "basic-wrong":
        return basic(detail or "someone", "not-a-token")
    raise AssertionError(kind)


# credential, then (private read, private write, public read, public write), from auth.md §10.
# 200 = readable, 201 = created, "e"/"r" = expired/revoked 401, "s" = insufficient scope.
MATRIX = [
    ("none", (401, 401, 200, 401)),
    ("pat:api:outsider", (404, 404, 200, 403)),
    ("pat:api:guest", (403, 403, 200, 403)),
    ("pat:api:reporter", (200, 403, 200, 403)),
    ("pat:api:developer", (200, 201, 200, 201)),
    ("pat:api:maintainer", (200, 201, 200, 201)),
    ("pat:api:owner", (200, 201, 200, 201)),
    ("pat:read_api:outsider", (404, "s", 200, "s")),
    ("pat:read_api:guest", (403, "s", 200, "s")),
    ("pat:read_api:reporter", (200, "s", 200, "s")),
    ("pat:read_api:developer", (200, "s", 200, "s")),
    ("pat:read_api:owner", (200, "s", 200, "s")),
    ("pat:read_repository:developer", ("s", "s", "s", "s")),
    ("pat:read_user:owner", ("s", "s", "s", "s")),
    ("pat-expired", ("e", "e", "e", "e")),
    ("pat-revoked", ("r", "r", "r", "r")),
    ("pat-unknown", (401, 401, 401, 401)),
    ("deploy:read_package_registry", (200, 403, 200, 403)),
    ("deploy:write_package_registry", (200, 201, 200, 201)),
    ("deploy:read_package_registry+write_package_registry", (200, 201, 200, 201)),
    ("deploy:read_repository", (404, 404, 200, 403)),
    ("deploy:write_package_registry:other", (404, 404, 200, 403)),
    ("deploy:write_package_registry:expired", (401, 401, 200, 401)),
    ("deploy:write_package_registry:revoked", (401, 401, 200, 401)),
    ("deploy-unknown", (401, 401, 200, 401)),
    ("job:developer", (200, 201, 200, 201)),
    ("job:maintainer", (200, 201, 200, 201)),
    ("job:reporter", (200, 403, 200, 403)),
    ("job:guest", (403, 403, 200, 403)),
    ("job:outsider", (404, 404, 200, 403)),
    ("job:developer:other", (404, 404, 200, 403)),
    ("job:developer:finished", (401, 401, 401, 401)),
    ("job-unknown", (401, 401, 401, 401)),
    ("basic-ci:developer", (200, 201, 200, 201)),
    ("basic-wrong:someone", (401, 401, 200, 401)),
    ("basic-wrong:gitlab-ci-token", (401, 401, 401, 401)),
]

# Internal projects (auth.md §10, note): signed-in users who are not members read, never write.
INTERNAL = [
    ("none", (401, 401)),
    ("pat:api:outsider", (200, 403)),
    ("pat:api:guest", (200, 403)),
    ("pat:api:reporter", (200, 403)),
    ("pat:api:developer", (200, 201)),
    ("pat:read_api:outsider", (200, "s")),
    ("deploy:read_package_registry", (200, 403)),
    ("deploy:read_repository", (404, 404)),
    ("job:outsider", (200, 403)),
    ("job:developer:other", (404, 404)),
]

CELLS = [
    pytest.param(cred, vis, action, expected, id=f"{cred}-{vis}-{action}")
    for cred, row in MATRIX
    for (vis, action), expected in zip(
        [("private", "read"), ("private", "write"), ("public", "read"), ("public", "write")], row,
        strict=True,
    )
] + [
    pytest.param(cred, "internal", action, expected, id=f"{cred}-internal-{action}")
    for cred, row in INTERNAL
    for action, expected in zip(["read", "write"], row, strict=True)
]

BODIES = {401: PLAIN_401, 403: FORBIDDEN, 404: NOT_FOUND, "e": EXPIRED, "r": REVOKED,
          "s": SCOPE_403}


async def request(client, inst: Instance, cred: str, visibility: str, action: str):
    pid = inst.projects[visibility]
    headers = await credential(inst, cred, pid)
    if action == "read":
        return await client.get(FILE.format(pid=pid, name="f.txt"), headers=headers,
                                allow_redirects=False)
    return await client.put(FILE.format(pid=pid, name="new.txt"), data=b"new", headers=headers)


@pytest.mark.parametrize(("cred", "visibility", "action", "expected"), CELLS)
async def test_matrix_cell_matches_gitlab(client, instance: Instance, cred: str,
                                          visibility: str, action: str, expected) -> None:
    resp = await request(client, instance, cred, visibility, action)
    if expected == 200:
        assert resp.status == 302, await resp.text()
        assert resp.headers["X-Checksum-SHA256"]
        return
    if expected == 201:
        assert resp.status == 201, await resp.text()
        assert await resp.json() == {"message": "201 Created"}
        return
    status = {"e": 401, "r": 401, "s": 403}.get(expected, expected)
    assert resp.status == status, await resp.text()
    assert await resp.json() == BODIES[expected]
    if expected == 401:
        assert resp.headers["WWW-Authenticate"] == PACKAGES_REALM
    if expected in ("e", "r"):
        assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="Protected by OAuth 2.0"')


# --- package registry switched off ----------------------------------------------------------


@pytest.mark.parametrize(("cred", "visibility", "action", "status"), [
    ("pat:api:guest", "private", "read", 403),
    ("pat:api:developer", "private", "read", 403),
    ("pat:api:owner", "private", "write", 403),
    ("pat:api:outsider", "private", "read", 404),
    ("none", "public", "read", 403),
    ("deploy:write_package_registry", "private", "write", 403),
    ("job:developer", "public", "write", 403),
])
async def test_registry_switched_off_refuses_as_gitlab(client, instance: Instance, cred: str,
                                                       visibility: str, action: str,
                                                       status: int) -> None:
    await instance.world.conn.execute(
        "UPDATE projects SET packages_enabled = false, package_registry_access_level = 'disabled'"
    )
    resp = await request(client, instance, cred, visibility, action)
    assert resp.status == status
    assert await resp.json() == (FORBIDDEN if status == 403 else NOT_FOUND)


async def test_registry_open_to_everyone_lets_anonymous_read_a_private_project(
    client, instance: Instance
) -> None:
    await instance.world.conn.execute(
        "UPDATE projects SET package_registry_access_level = 'public' WHERE id = $1",
        instance.projects["private"],
    )
    resp = await request(client, instance, "none", "private", "read")
    assert resp.status == 302


async def test_registry_for_members_only_hides_public_packages_from_others(
    client, instance: Instance
) -> None:
    await instance.world.conn.execute(
        "UPDATE projects SET package_registry_access_level = 'private' WHERE id = $1",
        instance.projects["public"],
    )
    resp = await request(client, instance, "pat:api:outsider", "public", "read")
    assert resp.status == 403


async def test_guest_reads_when_the_guest_pull_flag_is_on(aiohttp_client, settings,
                                                          instance: Instance) -> None:
    from gateway.app import create_app

    client = await aiohttp_client(create_app(settings.with_overrides(allow_guest_pull=True)))
    resp = await request(client, instance, "pat:api:guest", "private", "read")
    assert resp.status == 302


# --- every way of presenting a credential ---------------------------------------------------


async def _job(inst: Instance) -> str:
    issued = await tokens.issue_job_token(
        inst.world.conn, inst.projects["private"], inst.users["developer"], 3600)
    return issued.token


async def _deploy(inst: Instance) -> str:
    issued = await tokens.issue_deploy_token(
        inst.world.conn, project_id=inst.projects["private"], name="d",
        scopes=["write_package_registry"], expires_at=None, username=None)
    return issued.token


def _pat(inst: Instance) -> str:
    return inst.world.tokens["developer"]


FORMS = {
    "PRIVATE-TOKEN header": (_pat, lambda t: ({"PRIVATE-TOKEN": t}, "")),
    "private_token parameter": (_pat, lambda t: ({}, f"private_token={t}")),
    "Bearer PAT": (_pat, lambda t: ({"Authorization": f"Bearer {t}"}, "")),
    "access_token parameter": (_pat, lambda t: ({}, f"access_token={t}")),
    "Basic any user + PAT": (_pat, lambda t: (basic("anyone", t), "")),
    "Deploy-Token header": (_deploy, lambda t: ({"Deploy-Token": t}, "")),
    "DEPLOY-TOKEN header upper case": (_deploy, lambda t: ({"DEPLOY-TOKEN": t}, "")),
    "Basic any user + deploy token": (_deploy, lambda t: (basic("gitlab+deploy-token-1", t), "")),
    "Bearer deploy token": (_deploy, lambda t: ({"Authorization": f"Bearer {t}"}, "")),
    "JOB-TOKEN header": (_job, lambda t: ({"JOB-TOKEN": t}, "")),
    "job_token parameter": (_job, lambda t: ({}, f"job_token={t}")),
    "token parameter": (_job, lambda t: ({}, f"token={t}")),
    "Basic gitlab-ci-token + job token": (_job, lambda t: (basic("gitlab-ci-token", t), "")),
    "Bearer job token": (_job, lambda t: ({"Authorization": f"Bearer {t}"}, "")),
}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("action", ["read", "write"])
async def test_each_credential_form_reads_and_writes(client, instance: Instance, form: str,
                                                     action: str) -> None:
    make, present = FORMS[form]
    token = make(instance) if make is _pat else await make(instance)
    headers, query = present(token)
    pid = instance.projects["private"]
    if action == "read":
        resp = await client.get(FILE.format(pid=pid, name="f.txt") + (f"?{query}" if query else ""),
                                headers=headers, allow_redirects=False)
        assert resp.status == 302
    else:
        resp = await client.put(FILE.format(pid=pid, name="x.txt") + (f"?{query}" if query else ""),
                                data=b"x", headers=headers)
        assert resp.status == 201, await resp.text()


async def test_job_token_in_private_token_header_is_ignored_not_refused(
    client, instance: Instance
) -> None:
    token = await _job(instance)
    resp = await client.get(FILE.format(pid=instance.projects["public"], name="f.txt"),
                            headers={"PRIVATE-TOKEN": token}, allow_redirects=False)
    assert resp.status == 302  # anonymous read of a public project


# --- tokens of one project used on another ---------------------------------------------------


async def test_project_access_token_of_project_a_is_a_stranger_to_project_b(
    client, instance: Instance
) -> None:
    token = (await tokens.issue_resource_token(
        instance.world.conn, "project", instance.other_project, name="bot", scopes=["api"],
        access_level=auth.MAINTAINER, expires_at=None, description=None, created_by=None,
        host="example.com",
    )).token
    ok = await client.put(FILE.format(pid=instance.other_project, name="a.txt"), data=b"a",
                          headers={"PRIVATE-TOKEN": token})
    other = await client.put(FILE.format(pid=instance.projects["private"], name="a.txt"),
                             data=b"a", headers={"PRIVATE-TOKEN": token})
    assert (ok.status, other.status) == (201, 404)
    assert await other.json() == NOT_FOUND


async def test_group_deploy_token_works_on_every_project_below_the_group(
    client, instance: Instance
) -> None:
    conn = instance.world.conn
    group = await group_queries.namespace_by_full_path(conn, "acme")
    sub = await seed.ensure_group(conn, "sub", owner_id=None, parent=group)
    deep = await seed.add_project(conn, sub.id, "deep")
    token = (await tokens.issue_deploy_token(
        conn, group_id=group.id, name="g", scopes=["write_package_registry"],
        expires_at=None, username=None)).token
    here = await client.put(FILE.format(pid=instance.projects["private"], name="g.txt"),
                            data=b"g", headers={"Deploy-Token": token})
    below = await client.put(FILE.format(pid=deep.id, name="g.txt"), data=b"g",
                             headers={"Deploy-Token": token})
    elsewhere = await client.put(FILE.format(pid=instance.other_project, name="g.txt"),
                                 data=b"g", headers={"Deploy-Token": token})
    assert (here.status, below.status, elsewhere.status) == (201, 201, 404)


async def test_group_membership_is_inherited_by_subgroup_projects_highest_level_winning(
    client, instance: Instance
) -> None:
    conn = instance.world.conn
    acme = await group_queries.namespace_by_full_path(conn, "acme")
    sub = await seed.ensure_group(conn, "s", owner_id=None, parent=acme)
    deep = await seed.add_project(conn, sub.id, "d")
    reporter = instance.users["reporter"]
    await conn.execute("INSERT INTO group_members (group_id, user_id, access_level) "
                       "VALUES ($1, $2, 20)", acme.id, reporter)
    await conn.execute("INSERT INTO group_members (group_id, user_id, access_level) "
                       "VALUES ($1, $2, 30)", sub.id, reporter)
    resp = await client.put(FILE.format(pid=deep.id, name="i.txt"), data=b"i",
                            headers={"PRIVATE-TOKEN": instance.world.tokens["reporter"]})
    assert resp.status == 201


# --- blocked users, stored digests -----------------------------------------------------------


async def test_blocked_users_token_is_refused_with_the_reason(client, instance: Instance) -> None:
    await instance.world.conn.execute(
        "UPDATE users SET state = 'blocked' WHERE username = 'developer'")
    resp = await request(client, instance, "pat:api:developer", "private", "read")
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden - Your account has been blocked."}


async def test_tokens_are_stored_only_as_digests(client, instance: Instance) -> None:
    conn = instance.world.conn
    token = instance.world.tokens["developer"]
    deploy = await _deploy(instance)
    job = await _job(instance)
    for table in ("personal_access_tokens", "deploy_tokens", "job_tokens"):
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table)
        dump = str(await conn.fetch(f"SELECT * FROM {table}"))
        assert "token_digest" in {c["column_name"] for c in columns}
        for secret in (token, deploy, job):
            assert secret not in dump
    row = await conn.fetchrow("SELECT token_digest FROM job_tokens")
    assert bytes(row["token_digest"]) == auth.token_digest(job)


def test_tokens_carry_gitlabs_prefixes() -> None:
    assert auth.new_token(auth.PAT_PREFIX)[0].startswith("glpat-")
    assert auth.new_token(auth.DEPLOY_PREFIX)[0].startswith("gldt-")
    assert auth.new_token(auth.JOB_PREFIX)[0].startswith("glcbt-")


# --- the administration endpoints of a project ------------------------------------------------

# endpoint -> (method, path after /api/v4/projects/<id>, body, success status)
ADMIN_ENDPOINTS = {
    "get_project": ("GET", "", None, 200),
    "update_project": ("PUT", "", {"description": "changed"}, 200),
    "add_member": ("POST", "/members", {"user": "outsider", "access_level": 10}, 201),
    "create_deploy_token": ("POST", "/deploy_tokens",
                            {"name": "d", "scopes": ["read_package_registry"]}, 201),
    "create_access_token": ("POST", "/access_tokens",
                            {"name": "b", "scopes": ["api"], "access_level": 10}, 201),
    "mint_job_token": ("POST", "/job_tokens", {"user": "developer"}, 201),
    "delete_project": ("DELETE", "", None, 202),
}
_OK, _NO = "ok", 403
# role -> per endpoint (private, public); "ok" = the endpoint's success status.
ADMIN_MATRIX = {
    "anonymous": {"get_project": (404, _OK), "*": (401, 401)},
    "outsider": {"get_project": (404, _OK), "*": (404, _NO)},
    "guest": {"get_project": (_OK, _OK), "*": (_NO, _NO)},
    "reporter": {"get_project": (_OK, _OK), "*": (_NO, _NO)},
    "developer": {"get_project": (_OK, _OK), "*": (_NO, _NO)},
    "maintainer": {"delete_project": (_NO, _NO), "*": (_OK, _OK)},
    "owner": {"*": (_OK, _OK)},
    "admin": {"*": (_OK, _OK)},
}
ADMIN_CELLS = [
    pytest.param(role, endpoint, vis, expected, id=f"{role}-{endpoint}-{vis}")
    for role, row in ADMIN_MATRIX.items()
    for endpoint in ADMIN_ENDPOINTS
    for vis, expected in zip(("private", "public"), row.get(endpoint, row.get("*")), strict=True)
]


@pytest.mark.parametrize(("role", "endpoint", "visibility", "expected"), ADMIN_CELLS)
async def test_admin_endpoint_cell_matches_gitlab(client, instance: Instance, role: str,
                                                  endpoint: str, visibility: str,
                                                  expected) -> None:
    method, tail, body, success = ADMIN_ENDPOINTS[endpoint]
    if body is not None and "user" in body:
        body = {**{k: v for k, v in body.items() if k != "user"},
                "user_id": instance.users[body["user"]]}
    headers = {}
    if role == "admin":
        headers = {"PRIVATE-TOKEN": instance.world.admin_token}
    elif role != "anonymous":
        headers = {"PRIVATE-TOKEN": instance.world.tokens[role]}
    pid = instance.projects[visibility]
    resp = await client.request(method, f"/api/v4/projects/{pid}{tail}", json=body,
                                headers=headers)
    status = success if expected == _OK else expected
    assert resp.status == status, await resp.text()
    if status == 401:
        assert await resp.json() == PLAIN_401
        assert "WWW-Authenticate" not in resp.headers
    elif status == 403:
        assert await resp.json() == FORBIDDEN
    elif status == 404:
        assert await resp.json() == {"message": "404 Project Not Found"}


@pytest.mark.parametrize("cred", ["deploy:write_package_registry", "job:owner"])
async def test_deploy_and_job_tokens_are_not_accepted_by_the_admin_api(
    client, instance: Instance, cred: str
) -> None:
    pid = instance.projects["private"]
    headers = await credential(instance, cred, pid)
    resp = await client.put(f"/api/v4/projects/{pid}", json={"description": "x"},
                            headers=headers)
    assert (resp.status, await resp.json()) == (401, PLAIN_401)


async def test_read_api_token_reads_a_project_but_may_not_change_it(
    client, instance: Instance
) -> None:
    pid = instance.projects["private"]
    headers = await credential(instance, "pat:read_api:owner", pid)
    read = await client.get(f"/api/v4/projects/{pid}", headers=headers)
    write = await client.put(f"/api/v4/projects/{pid}", json={"description": "x"},
                             headers=headers)
    assert read.status == 200
    assert (write.status, await write.json()) == (403, SCOPE_403)
