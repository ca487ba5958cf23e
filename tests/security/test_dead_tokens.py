"""Expired, revoked and blocked credentials on the routes that make new credentials: nothing
comes back to life by rotating or minting (``lib/api/api_guard.rb``: the OAuth-style 401 on
every route; a blocked user's 403)."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.enums import MAINTAINER
from tests.conftest import World
from tests.security.common import REVOKED, h, project_bot

EXPIRED = {"error": "invalid_token", "error_description":
           "Token is expired. You can either do re-authorization or token refresh."}
BLOCKED = {"message": "403 Forbidden - Your account has been blocked."}


async def _dead(world: World, how: str) -> str:
    if how == "expired":
        return await world.token(5, expires_at=dt.date.today() - dt.timedelta(days=1))
    token = await world.token(5)
    if how == "revoked":
        await world.conn.execute("UPDATE personal_access_tokens SET revoked = true "
                                 "WHERE user_id = 5")
    else:
        await world.conn.execute("UPDATE users SET state = 'blocked' WHERE id = 5")
    return token


ANSWERS = {"expired": (401, EXPIRED), "revoked": (401, REVOKED), "blocked": (403, BLOCKED)}


@pytest.mark.parametrize("how", list(ANSWERS))
@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v4/personal_access_tokens/self/rotate", None),
    ("POST", "/api/v4/projects/{pid}/access_tokens", {"name": "b", "scopes": ["api"]}),
    ("POST", "/api/v4/projects/{pid}/job_tokens", {"user_id": 5}),
    ("DELETE", "/api/v4/projects/{pid}/job_tokens/1", None),
    ("POST", "/api/v4/projects/{pid}/members", {"user_id": 7, "access_level": 30}),
])
async def test_a_dead_maintainer_token_makes_nothing(client, world: World, how: str, method: str,
                                                     path: str, body: dict | None) -> None:
    token = await _dead(world, how)
    resp = await client.request(method, path.format(pid=world.project_id), json=body,
                                headers=h(token))
    assert (resp.status, await resp.json()) == ANSWERS[how]


async def test_a_revoked_bot_token_cannot_rotate_itself(client, world: World) -> None:
    token, token_id, _ = await project_bot(world, world.project_id, MAINTAINER)
    await world.conn.execute("UPDATE personal_access_tokens SET revoked = true WHERE id = $1",
                             token_id)
    resp = await client.post(f"/api/v4/projects/{world.project_id}/access_tokens/self/rotate",
                             headers=h(token))
    assert (resp.status, await resp.json()) == (401, REVOKED)


async def test_a_rotated_away_token_cannot_rotate_again(client, world: World) -> None:
    token = world.tokens["developer"]
    first = await client.post("/api/v4/personal_access_tokens/self/rotate", headers=h(token))
    again = await client.post("/api/v4/personal_access_tokens/self/rotate", headers=h(token))
    assert first.status == 200
    assert (again.status, await again.json()) == (401, REVOKED)
