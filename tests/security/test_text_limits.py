"""Hole 6: GitLab's sizes. Groups nest at most 20 ancestors deep (``Namespace::
NUMBER_OF_ANCESTORS_ALLOWED``); names, paths, descriptions and the other texts are bounded as
GitLab's models bound them, with GitLab's 400 bodies; nothing oversized is stored."""

from __future__ import annotations

import pytest

from gateway.identity import seed
from tests.conftest import World
from tests.security.common import acme_id, h


def failed_to_save(field: str, limit: int) -> dict:
    return {"message": f'Failed to save group {{:{field}=>["is too long (maximum is {limit} '
                       f'characters)"]}}'}


def too_long(field: str, limit: int) -> dict:
    return {"message": {field: [f"is too long (maximum is {limit} characters)"]}}


async def _chain(world: World, depth: int) -> int:
    """Groups ``acme/l2/…`` down to ``depth`` levels; the deepest one's id."""
    parent = await seed.ensure_group(world.conn, "acme", owner_id=None)
    for level in range(2, depth + 1):
        parent = await seed.ensure_group(world.conn, f"l{level}", owner_id=None, parent=parent)
    return parent.id


async def test_a_group_may_have_twenty_ancestors(client, world: World) -> None:
    deepest = await _chain(world, 20)
    resp = await client.post("/api/v4/groups", json={"name": "l21", "path": "l21",
                                                     "parent_id": deepest},
                             headers=h(world.admin_token))
    assert resp.status == 201


async def test_not_twenty_one(client, world: World) -> None:
    deepest = await _chain(world, 21)
    resp = await client.post("/api/v4/groups", json={"name": "l22", "path": "l22",
                                                     "parent_id": deepest},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {
        "message": 'Failed to save group {:parent_id=>["has too deep level of nesting"]}'})


async def test_a_huge_group_description_is_refused_and_not_stored(client, world: World) -> None:
    resp = await client.post("/api/v4/groups",
                             json={"name": "big", "path": "big", "description": "x" * 900_000},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, failed_to_save("description", 500))
    assert await world.conn.fetchval("SELECT count(*) FROM namespaces WHERE path = 'big'") == 0


@pytest.mark.parametrize(("field", "limit"), [("name", 255), ("path", 255),
                                              ("description", 500)])
async def test_group_texts_one_past_the_limit(client, world: World, field: str,
                                              limit: int) -> None:
    body = {"name": "g", "path": "g", field: "a" * (limit + 1)}
    ok = {"name": "g", "path": "g", field: "a" * limit}
    refused = await client.post("/api/v4/groups", json=body, headers=h(world.admin_token))
    accepted = await client.post("/api/v4/groups", json=ok, headers=h(world.admin_token))
    assert (refused.status, await refused.json()) == (400, failed_to_save(field, limit))
    assert accepted.status == 201


async def test_group_update_past_the_limit(client, world: World) -> None:
    resp = await client.put("/api/v4/groups/acme", json={"description": "x" * 501},
                            headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, too_long("description", 500))


@pytest.mark.parametrize(("field", "limit"), [("name", 255), ("path", 255),
                                              ("description", 2000)])
async def test_project_texts_past_the_limit(client, world: World, field: str,
                                            limit: int) -> None:
    body = {"name": "p", "path": "p", "namespace_id": await acme_id(world),
            field: "a" * (limit + 1)}
    resp = await client.post("/api/v4/projects", json=body, headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, too_long(field, limit))


async def test_project_update_past_the_limit(client, world: World) -> None:
    resp = await client.put(f"/api/v4/projects/{world.project_id}",
                            json={"description": "d" * 2001}, headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, too_long("description", 2000))


@pytest.mark.parametrize(("field", "limit"), [("name", 255), ("bio", 255), ("job_title", 200),
                                              ("location", 500), ("organization", 500)])
async def test_user_texts_past_the_limit(client, world: World, field: str, limit: int) -> None:
    body = {"username": "longer", "name": "L", "email": "l@example.com",
            "password": "S3cret-pass!", field: "a" * (limit + 1)}
    resp = await client.post("/api/v4/users", json=body, headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, too_long(field, limit))


async def test_a_password_past_128_characters_is_refused(client, world: World) -> None:
    resp = await client.put("/api/v4/users/2", json={"password": "p" * 129},
                            headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, too_long("password", 128))


@pytest.mark.parametrize("field", ["name", "description"])
async def test_personal_token_texts_past_255(client, world: World, field: str) -> None:
    body = {"name": "t", "scopes": ["api"], field: "n" * 256}
    resp = await client.post("/api/v4/users/2/personal_access_tokens", json=body,
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, too_long(field, 255))


async def test_a_huge_access_token_name_is_refused(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/access_tokens",
                             json={"name": "n" * 900_000, "scopes": ["api"]},
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (
        400, {"message": "400 Bad request - Name is too long (maximum is 255 characters)"})


async def test_a_huge_deploy_token_name_is_refused(client, world: World) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/deploy_tokens",
                             json={"name": "n" * 256, "scopes": ["read_package_registry"]},
                             headers=h(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (
        400, {"message": "400 Bad request - Name is too long (maximum is 255 characters)"})


async def test_a_body_over_a_mebibyte_is_refused(client, world: World) -> None:
    resp = await client.post("/api/v4/groups", data={"name": "g", "path": "g",
                                                     "description": "x" * (2 << 20)},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (
        400, {"message": "400 Bad request - request body too large"})
    assert await world.conn.fetchval("SELECT count(*) FROM namespaces WHERE path = 'g'") == 0
