"""A gateway dies or freezes under load: only what it held fails, the others carry on, nginx
stops sending it anything once its readiness fails, and nothing is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import pytest

from gateway.devtools.cluster import Cluster
from gateway.devtools.dev import BUCKET
from gateway.devtools.instances import GatewayInstance
from tests.cluster.conftest import (
    STALE_SECONDS,
    Api,
    committed_sha256s,
    nginx_log_size,
    sha256,
    unique,
    wait_for_nginx_lines,
)
from tests.faults.checks import assert_consistent, wait_for

BODY = 8 * 2**20  # two parts of 5 MiB: a multipart upload
CHUNK = 64 * 1024


@pytest.fixture
def victim(cluster: Cluster) -> Iterator[GatewayInstance]:
    """gateway-2, started again after the test and back in nginx's rotation."""
    instance = cluster.instance("gateway-2")
    yield instance
    if instance.pid is not None:
        os.kill(instance.pid, signal.SIGCONT)
    else:
        cluster.restart("gateway-2")
    assert cluster.rotation is not None
    assert cluster.rotation.wait_until(lambda out: not out, 60), "gateway-2 not back"


async def slowly(body: bytes) -> AsyncIterator[bytes]:
    """A client sending at its own pace (chunked), so uploads are in flight for a while."""
    for i in range(0, len(body), CHUNK):
        yield body[i:i + CHUNK]
        await asyncio.sleep(0.005)


async def put(http: aiohttp.ClientSession, url: str, body, headers: dict[str, str]) -> object:
    """The status, or the client-side error when the connection broke before an answer."""
    try:
        async with http.put(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError as exc:
        return exc


async def test_sigkill_during_32_uploads_fails_only_its_own_and_leaves_nothing(
    cluster: Cluster, victim: GatewayInstance, api: Api, db: asyncpg.Connection, s3,
    http: aiohttp.ClientSession,
) -> None:
    before, since = await committed_sha256s(db), nginx_log_size(cluster)
    name = unique("kill")
    base = os.urandom(BODY)
    bodies = {f"f{i:02}.bin": i.to_bytes(4, "big") + base[4:] for i in range(32)}
    uploads = {f: asyncio.create_task(put(http, api.file(name, "1.0.0", f), slowly(b), api.auth))
               for f, b in bodies.items()}

    async def victim_is_streaming() -> bool:
        return await db.fetchval("SELECT count(*) FROM pending_uploads WHERE instance = $1",
                                 victim.name) >= 2
    await wait_for(victim_is_streaming, "uploads in flight on gateway-2")
    victim.kill()
    results = dict(zip(uploads, await asyncio.gather(*uploads.values()), strict=True))

    lines = {ln.request.split()[1].rsplit("/", 1)[1]: ln
             for ln in await wait_for_nginx_lines(cluster, since, 32) if name in ln.request}
    dead = f"127.0.0.1:{victim.port}"
    failed = [f for f, r in results.items() if r != 201]
    assert failed, "the kill cut no upload"
    for file_name, result in results.items():
        if result == 201:
            assert lines[file_name].answered_by != dead
        else:  # nginx's JSON 502 (or the connection closed), and only on the dead gateway
            assert result == 502 or isinstance(result, aiohttp.ClientError), result
            assert lines[file_name].upstreams[0] == dead
    assert len(failed) < 32

    # The clients retry; the survivors take them.
    retries = await asyncio.gather(*(put(http, api.file(name, "1.0.0", f), bodies[f], api.auth)
                                     for f in failed))
    assert retries == [201] * len(failed)
    # The dead gateway's pending rows go stale; a survivor's sweeper aborts what they held.
    await assert_consistent(db, s3, BUCKET, [*before, *map(sha256, bodies.values())],
                            within=STALE_SECONDS * 8)


async def _requests_after(cluster: Cluster, api: Api, http: aiohttp.ClientSession,
                          name: str) -> list[str]:
    """12 uploads and 12 downloads through nginx; the gateways nginx tried for them."""
    since = nginx_log_size(cluster)
    for i in range(12):
        url = api.file(name, "1.0.0", f"f{i}.txt")
        async with http.put(url, data=f"body {i}".encode(), headers=api.auth) as resp:
            assert resp.status == 201
        async with http.get(url, headers=api.auth) as resp:  # follows the redirect
            assert resp.status == 200
            assert await resp.read() == f"body {i}".encode()
    lines = [ln for ln in await wait_for_nginx_lines(cluster, since, 24) if name in ln.request]
    assert len(lines) == 24
    return [u for ln in lines for u in ln.upstreams]


async def test_killed_gateway_leaves_the_rotation_and_the_next_requests_never_try_it(
    cluster: Cluster, victim: GatewayInstance, api: Api, http: aiohttp.ClientSession,
) -> None:
    assert cluster.rotation is not None
    victim.kill()
    assert cluster.rotation.wait_until(lambda out: victim.name in out, 30)
    tried = await _requests_after(cluster, api, http, unique("after-kill"))
    assert f"127.0.0.1:{victim.port}" not in tried
    assert len(set(tried)) == 2  # both survivors serve


async def test_frozen_gateway_leaves_the_rotation_and_comes_back_when_it_thaws(
    cluster: Cluster, victim: GatewayInstance, api: Api, http: aiohttp.ClientSession,
) -> None:
    # A frozen process still accepts connections (the kernel does), so nginx's passive checks
    # alone would send it requests that hang; only its failing readiness takes it out.
    assert cluster.rotation is not None and victim.pid is not None
    os.kill(victim.pid, signal.SIGSTOP)
    assert cluster.rotation.wait_until(lambda out: victim.name in out, 30)
    tried = await _requests_after(cluster, api, http, unique("frozen"))
    assert f"127.0.0.1:{victim.port}" not in tried
    os.kill(victim.pid, signal.SIGCONT)
    assert cluster.rotation.wait_until(lambda out: not out, 30)
