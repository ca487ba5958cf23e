"""Hole 13: a change of identity on one gateway process is honoured by every other at once,
though each keeps a token cache (``GATEWAY_TOKEN_CACHE_SECONDS``, here a minute).

Two real ``gateway serve`` processes share PostgreSQL; a revocation, a block, a demotion... made
through one is refused by the other on its next request, long before its cache would expire.
While a process cannot hear of changes (its LISTEN connection lost or never made), it serves
nothing from its cache.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import aiohttp
import asyncpg
import pytest

from gateway.config import Settings
from gateway.devtools.processes import free_port
from tests.conftest import GatewayProcess, World, s3_client, start_gateway
from tests.security.common import PLAIN_401, REVOKED, file_url, h, project_bot

CACHE = {"GATEWAY_TOKEN_CACHE_SECONDS": "60"}
BLOCKED = {"message": "403 Forbidden - Your account has been blocked."}


@pytest.fixture(scope="module")
def pair(database_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two gateway processes with a one-minute token cache, for the whole module."""
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    settings = Settings(database_url=database_url, s3_bucket=bucket, s3_endpoint_url=s3_endpoint)
    tmp = tmp_path_factory.mktemp("pair")
    a = start_gateway(settings, tmp, **CACHE)
    b = start_gateway(settings, tmp, **CACHE)
    yield a, b
    a.stop()
    b.stop()


async def listeners(conn: asyncpg.Connection) -> set[int]:
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity "
                            "WHERE application_name = 'packgate-listen'")
    return {r["pid"] for r in rows}


async def wait_for_listeners(conn: asyncpg.Connection, count: int, *,
                             other_than: frozenset[int] | set[int] = frozenset(),
                             deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while len(await listeners(conn) - other_than) < count:
        assert time.monotonic() < end, "the gateways' listeners did not connect"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # LISTEN runs right after connecting


async def call(method: str, url: str, **kw: object) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session, session.request(
            method, url, allow_redirects=False, **kw) as resp:  # type: ignore[arg-type]
        body = await resp.json(content_type=None) if resp.content_length != 0 else None
        return resp.status, body


async def refused_soon(method: str, url: str, expected: int, **kw: object) -> tuple[int, object]:
    """The answer once it is ``expected`` (NOTIFY is delivered asynchronously: well within a
    second here, against the minute the cache would otherwise hold it)."""
    end = time.monotonic() + 5
    while True:
        status, body = await call(method, url, **kw)
        if status == expected or time.monotonic() > end:
            return status, body
        await asyncio.sleep(0.02)


@pytest.fixture
async def ready(pair, world: World) -> tuple[GatewayProcess, GatewayProcess]:
    await wait_for_listeners(world.conn, 2)
    return pair


async def test_the_cache_is_in_use(ready, world: World) -> None:
    """The control for every test here: a change made behind the gateways' back (plain SQL,
    no NOTIFY) is not seen while the cached token lives, so the tests below do exercise the
    cache and its invalidation, not a lookup on every request."""
    _, b = ready
    token = world.tokens["developer"]
    assert (await call("GET", f"{b.url}/api/v4/user", headers=h(token)))[0] == 200
    await world.conn.execute("UPDATE personal_access_tokens SET revoked = true "
                             "WHERE user_id = 4")
    assert (await call("GET", f"{b.url}/api/v4/user", headers=h(token)))[0] == 200


async def test_a_token_revoked_on_one_gateway_is_refused_by_the_other(ready, world: World
                                                                      ) -> None:
    a, b = ready
    token = world.tokens["developer"]
    token_id = await world.conn.fetchval("SELECT max(id) FROM personal_access_tokens "
                                         "WHERE user_id = 4")
    assert (await call("GET", f"{b.url}/api/v4/user", headers=h(token)))[0] == 200  # cached
    status, _ = await call("DELETE", f"{a.url}/api/v4/personal_access_tokens/{token_id}",
                           headers=h(world.admin_token))
    assert status == 204
    assert await refused_soon("GET", f"{b.url}/api/v4/user", 401, headers=h(token)) == (
        401, REVOKED)


async def test_a_rotated_token_is_refused_by_the_other_gateway(ready, world: World) -> None:
    a, b = ready
    token = world.tokens["developer"]
    assert (await call("GET", f"{b.url}/api/v4/user", headers=h(token)))[0] == 200
    status, _ = await call("POST", f"{a.url}/api/v4/personal_access_tokens/self/rotate",
                           headers=h(token))
    assert status == 200
    assert await refused_soon("GET", f"{b.url}/api/v4/user", 401, headers=h(token)) == (
        401, REVOKED)


async def test_a_user_blocked_on_one_gateway_is_refused_by_the_other(ready, world: World
                                                                     ) -> None:
    a, b = ready
    token = world.tokens["developer"]
    url = f"{b.url}{file_url(world.project_id)}"
    assert (await call("PUT", url, data=b"x", headers=h(token)))[0] == 201
    status, _ = await call("POST", f"{a.url}/api/v4/users/4/block", headers=h(world.admin_token))
    assert status == 201
    assert await refused_soon("GET", url, 403, headers=h(token)) == (403, BLOCKED)


async def test_a_demoted_administrator_loses_the_admin_api_on_the_other_gateway(
    ready, world: World
) -> None:
    a, b = ready
    admin = await world.user("second", admin=True)
    token = await world.token(admin.id)
    listing = f"{b.url}/api/v4/deploy_tokens"  # administrators only
    assert (await call("GET", listing, headers=h(token)))[0] == 200
    status, _ = await call("PUT", f"{a.url}/api/v4/users/{admin.id}", json={"admin": False},
                           headers=h(world.admin_token))
    assert status == 200
    assert await refused_soon("GET", listing, 403, headers=h(token)) == (
        403, {"message": "403 Forbidden"})


async def test_a_deleted_user_is_unknown_to_the_other_gateway(ready, world: World) -> None:
    a, b = ready
    token = world.tokens["outsider"]
    assert (await call("GET", f"{b.url}/api/v4/user", headers=h(token)))[0] == 200
    status, _ = await call("DELETE", f"{a.url}/api/v4/users/7", headers=h(world.admin_token))
    assert status == 204
    assert await refused_soon("GET", f"{b.url}/api/v4/user", 401, headers=h(token)) == (
        401, PLAIN_401)


async def test_a_revoked_project_access_token_is_refused_by_the_other(ready, world: World
                                                                      ) -> None:
    a, b = ready
    token, token_id, _ = await project_bot(world, world.project_id, 30)
    url = f"{b.url}{file_url(world.project_id)}"
    assert (await call("PUT", url, data=b"x", headers=h(token)))[0] == 201
    status, _ = await call(
        "DELETE", f"{a.url}/api/v4/projects/{world.project_id}/access_tokens/{token_id}",
        headers=h(world.admin_token))
    assert status == 204
    assert (await refused_soon("GET", url, 401, headers=h(token)))[0] == 401


async def test_a_revoked_job_token_is_refused_by_the_other(ready, world: World) -> None:
    a, b = ready
    status, job = await call("POST", f"{a.url}/api/v4/projects/{world.project_id}/job_tokens",
                             json={"user_id": 4}, headers=h(world.admin_token))
    assert status == 201
    headers = {"JOB-TOKEN": job["token"]}  # type: ignore[index]
    url = f"{b.url}{file_url(world.project_id)}"
    assert (await call("PUT", url, data=b"x", headers=headers))[0] == 201
    status, _ = await call(
        "DELETE", f"{a.url}/api/v4/projects/{world.project_id}/job_tokens/{job['id']}",  # type: ignore[index]
        headers=h(world.admin_token))
    assert status == 204
    assert await refused_soon("GET", url, 401, headers=headers) == (401, PLAIN_401)


async def test_a_deleted_deploy_token_is_refused_by_the_other(ready, world: World) -> None:
    a, b = ready
    status, made = await call("POST", f"{a.url}/api/v4/projects/{world.project_id}/deploy_tokens",
                              json={"name": "d", "scopes": ["write_package_registry"]},
                              headers=h(world.admin_token))
    headers = {"Deploy-Token": made["token"]}  # type: ignore[index]
    url = f"{b.url}{file_url(world.project_id)}"
    assert (await call("PUT", url, data=b"x", headers=headers))[0] == 201
    status, _ = await call(
        "DELETE",
        f"{a.url}/api/v4/projects/{world.project_id}/deploy_tokens/{made['id']}",  # type: ignore[index]
        headers=h(world.admin_token))
    assert status == 204
    # An unknown deploy token leaves the caller anonymous: a private project is then 401.
    assert (await refused_soon("PUT", url, 401, data=b"x", headers=headers))[0] == 401


async def test_a_gateway_that_lost_its_listener_forgets_what_it_cached(ready,
                                                                      world: World) -> None:
    """The change below is made behind the gateways' back (no NOTIFY), while their LISTEN
    connections are cut: what they cached before is not trusted once they listen again."""
    _, b = ready
    token = world.tokens["developer"]
    assert (await call("GET", f"{b.url}/api/v4/user", headers=h(token)))[0] == 200  # cached
    before = await listeners(world.conn)
    await world.conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'packgate-listen'")
    await world.conn.execute("UPDATE personal_access_tokens SET revoked = true "
                             "WHERE user_id = 4")
    await wait_for_listeners(world.conn, 2, other_than=before)
    assert await call("GET", f"{b.url}/api/v4/user", headers=h(token)) == (401, REVOKED)


async def test_without_a_listener_nothing_is_served_from_the_cache(
    settings, tmp_path, world: World
) -> None:
    """A listen DSN that cannot connect (PgBouncer in transaction mode, say): the gateway still
    answers, but looks every token up, so a change it was never told of is honoured."""
    dead = f"postgresql://packgate@127.0.0.1:{free_port()}/none"
    gw = start_gateway(settings, tmp_path, GATEWAY_DATABASE_LISTEN_URL=dead, **CACHE)
    try:
        token = world.tokens["developer"]
        assert (await call("GET", f"{gw.url}/api/v4/user", headers=h(token)))[0] == 200
        await world.conn.execute("UPDATE personal_access_tokens SET revoked = true "
                                 "WHERE user_id = 4")
        assert await call("GET", f"{gw.url}/api/v4/user", headers=h(token)) == (401, REVOKED)
    finally:
        gw.stop()
    assert "stopped listening" in gw.log() or "listener connection failed" in gw.log()
    assert token not in gw.log()


def test_a_lookup_that_raced_a_change_is_not_cached() -> None:
    """A lookup that began before a change arrived must not store what it read."""
    from gateway.auth import TokenCache

    cache = TokenCache(60)
    cache.set_live(True)
    generation = cache.generation  # the lookup starts
    cache.invalidate("token:1")  # the NOTIFY arrives meanwhile
    cache.put("pat", b"digest", object(), generation)
    assert cache.get("pat", b"digest") is None


def test_nothing_is_cached_while_not_listening() -> None:
    from gateway.auth import TokenCache

    cache = TokenCache(60)
    cache.put("pat", b"digest", object(), cache.generation)
    assert cache.get("pat", b"digest") is None


@pytest.fixture
def transaction_pooler(database_url: str, tmp_path) -> Iterator[str]:
    """PgBouncer in transaction mode in front of the test database: the listen URL an operator
    might wrongly share with the pool. Its LISTEN is accepted and then never heard from."""
    from urllib.parse import urlsplit

    from gateway.devtools.pgbouncer import PgBouncer

    target = urlsplit(database_url)
    bouncer = PgBouncer(tmp_path / "pgbouncer", target.port)
    bouncer.start()
    try:
        yield bouncer.database_url(target.path.lstrip("/"))
    finally:
        bouncer.stop()


async def test_a_listen_url_through_a_transaction_pooler_is_not_trusted(
    settings, tmp_path, world: World, transaction_pooler: str
) -> None:
    """A LISTEN through PgBouncer in transaction mode never hears a NOTIFY: the listener's own
    probe notices, so the gateway keeps looking tokens up rather than trusting a cache that
    nobody would ever invalidate."""
    gw = start_gateway(settings, tmp_path, GATEWAY_DATABASE_LISTEN_URL=transaction_pooler,
                       **CACHE)
    other = start_gateway(settings, tmp_path, **CACHE)
    try:
        token = world.tokens["developer"]
        token_id = await world.conn.fetchval("SELECT max(id) FROM personal_access_tokens "
                                             "WHERE user_id = 4")
        assert (await call("GET", f"{gw.url}/api/v4/user", headers=h(token)))[0] == 200
        status, _ = await call("DELETE", f"{other.url}/api/v4/personal_access_tokens/{token_id}",
                               headers=h(world.admin_token))
        assert status == 204
        assert await call("GET", f"{gw.url}/api/v4/user", headers=h(token)) == (401, REVOKED)
    finally:
        gw.stop()
        other.stop()
