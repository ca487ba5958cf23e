"""Resumable upload sessions are guarded as a PUT is: the same tokens and roles create them,
and nobody without write access to the session's own project can read or append to one."""

from __future__ import annotations

import pytest

from tests.conftest import World
from tests.security.common import FORBIDDEN, PLAIN_401, file_url, h

TUS = {"Tus-Resumable": "1.0.0"}


def _create_headers(token: str | None, length: int = 4) -> dict[str, str]:
    headers = {**TUS, "Upload-Length": str(length)}
    return {**headers, **h(token)} if token else headers


async def _session(client, world: World) -> str:
    resp = await client.post(file_url(world.project_id) + "/uploads",
                             headers=_create_headers(world.tokens["developer"]))
    assert resp.status == 201
    return resp.headers["Location"]


def _patch_headers(token: str, offset: str = "0") -> dict[str, str]:
    return {**TUS, **h(token), "Upload-Offset": offset,
            "Content-Type": "application/offset+octet-stream"}


async def test_anonymous_creation_is_401(client, world: World) -> None:
    resp = await client.post(file_url(world.project_id) + "/uploads",
                             headers=_create_headers(None))
    assert resp.status == 401
    assert await resp.json() == PLAIN_401


async def test_a_reporter_cannot_create_a_session(client, world: World) -> None:
    resp = await client.post(file_url(world.project_id) + "/uploads",
                             headers=_create_headers(world.tokens["reporter"]))
    assert resp.status == 403
    assert await resp.json() == FORBIDDEN


async def test_ietf_creation_by_a_reporter_is_refused_before_the_body(client, world: World
                                                                     ) -> None:
    resp = await client.put(file_url(world.project_id), data=b"abc", headers={
        **h(world.tokens["reporter"]), "Upload-Complete": "?1"})
    assert resp.status == 403


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
async def test_an_outsider_cannot_reach_a_session_of_a_private_project(
        client, world: World, method: str) -> None:
    url = await _session(client, world)
    resp = await client.request(method, url, data=b"abcd" if method == "PATCH" else None,
                                headers=_patch_headers(world.tokens["outsider"]))
    assert resp.status == 404
    if method != "HEAD":
        assert await resp.json() == {"message": "404 Not Found"}  # as a PUT answers


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE"])
async def test_another_projects_token_does_not_find_the_session_under_its_project(
        client, world: World, method: str) -> None:
    url = await _session(client, world)
    other = await world.project("other", "things")
    owner = await world.user("other-dev")
    await world.member(owner.id, 30, other)
    token = await world.token(owner.id)
    # The same session id, under the project the token may write to.
    foreign = url.replace(f"/projects/{world.project_id}/", f"/projects/{other}/")
    resp = await client.request(method, foreign, data=b"abcd" if method == "PATCH" else None,
                                headers=_patch_headers(token))
    assert resp.status == 404
    resp = await client.head(url, headers={**TUS, **h(world.tokens["developer"])})
    assert resp.headers["Upload-Offset"] == "0"


async def test_a_reporter_of_the_project_cannot_read_or_append(client, world: World) -> None:
    url = await _session(client, world)
    for method in ("HEAD", "PATCH", "DELETE"):
        resp = await client.request(method, url, data=b"ab" if method == "PATCH" else None,
                                    headers=_patch_headers(world.tokens["reporter"]))
        assert resp.status == 403, method


@pytest.mark.parametrize("session_id", ["0" * 31, "0" * 33, "../../x", "A" * 32, "٣" * 32])
async def test_malformed_session_ids_are_not_found(client, world: World, session_id: str
                                                  ) -> None:
    resp = await client.head(f"/api/v4/projects/{world.project_id}/packages/uploads/"
                             f"{session_id}", headers={**TUS, **h(world.tokens["developer"])})
    assert resp.status == 404


@pytest.mark.parametrize("offset", ["١٢", "-1", "9223372036854775808", "1e3", ""])
async def test_offsets_that_are_not_int64_ascii_digits_are_400(
        client, world: World, offset: str) -> None:
    url = await _session(client, world)
    resp = await client.patch(url, data=b"ab", headers=_patch_headers(
        world.tokens["developer"], offset))
    assert resp.status == 400


async def test_a_declared_length_at_the_file_size_limit_is_refused(
        aiohttp_client, settings, db, world: World) -> None:
    from gateway.app import create_app

    client = await aiohttp_client(create_app(settings.with_overrides(max_file_size=1000)))
    resp = await client.post(file_url(world.project_id) + "/uploads",
                             headers=_create_headers(world.tokens["developer"], 1000))
    assert resp.status == 400
    assert await resp.json() == {"message": "400 Bad request - File is too large"}
    assert await world.conn.fetchval("SELECT count(*) FROM upload_sessions") == 0


async def test_a_body_past_the_declared_length_is_refused(client, world: World) -> None:
    url = await _session(client, world)
    resp = await client.patch(url, data=b"abcdef", headers=_patch_headers(
        world.tokens["developer"]))
    assert resp.status == 400
    resp = await client.head(url, headers={**TUS, **h(world.tokens["developer"])})
    assert resp.headers["Upload-Offset"] == "0"
