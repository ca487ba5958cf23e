"""Slowloris and connection floods against a real ``gateway serve``: heads must arrive within
GATEWAY_HEADER_TIMEOUT, idle keep-alive connections close after GATEWAY_KEEPALIVE_TIMEOUT, and
past GATEWAY_MAX_CONNECTIONS new connections get a JSON 503 and are closed, while requests in
progress and normal traffic are served."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.config import Settings
from tests.conftest import GatewayProcess, World, start_gateway
from tests.security.edgeclient import Conn, get, port_of

HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 2.0
# The server's deadlines are short; what a test waits for them is generous (a loaded machine).
WAIT = 30.0


@pytest.fixture
def edge_gateway(settings: Settings, tmp_path: Path, world: World
                 ) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(**extra: str) -> GatewayProcess:
        env = {"GATEWAY_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
               "GATEWAY_KEEPALIVE_TIMEOUT": str(KEEPALIVE_TIMEOUT), **extra}
        gw = start_gateway(settings, tmp_path, **env)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


async def health(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/-/health") as resp:
        return resp.status


async def test_idle_connections_that_never_send_a_request_are_closed(edge_gateway) -> None:
    gw = edge_gateway()
    conns = [await Conn.open(port_of(gw.url)) for _ in range(300)]
    closed = await asyncio.gather(*(c.closed(WAIT) for c in conns))
    assert all(closed)


async def test_idle_keepalive_connections_are_closed_after_the_idle_time(edge_gateway) -> None:
    gw = edge_gateway()
    conns = [await Conn.open(port_of(gw.url)) for _ in range(100)]
    for c in conns:
        await c.send(get("/-/health"))
        assert (await c.reply()).status == 200
    closed = await asyncio.gather(*(c.closed(WAIT) for c in conns))
    assert all(closed)


async def test_keepalive_connection_serves_requests_within_the_idle_time(edge_gateway) -> None:
    gw = edge_gateway(GATEWAY_KEEPALIVE_TIMEOUT="30")
    conn = await Conn.open(port_of(gw.url))
    for _ in range(3):
        await conn.send(get("/-/health"))
        assert (await conn.reply()).status == 200
        await asyncio.sleep(0.3)
    conn.close()


async def test_trickled_head_is_cut_at_the_header_timeout_with_json_408(edge_gateway) -> None:
    gw = edge_gateway()
    conn = await Conn.open(port_of(gw.url))
    head = get("/-/health", "X-Slow: " + "x" * 200)

    async def trickle() -> None:
        for i in range(len(head) - 4):  # never the final CRLF CRLF
            await conn.send(head[i : i + 1])
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    try:
        reply = await conn.reply(WAIT)
    finally:
        sender.cancel()
    assert reply.status == 408
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {
        "message": "408 Request Timeout - the request headers did not arrive in time"
    }
    assert await conn.closed(WAIT)


async def test_trickled_head_after_a_keepalive_request_is_cut_too(edge_gateway) -> None:
    gw = edge_gateway(GATEWAY_KEEPALIVE_TIMEOUT="60")
    conn = await Conn.open(port_of(gw.url))
    await conn.send(get("/-/health"))
    assert (await conn.reply()).status == 200
    await conn.send(b"GET /-/health HTTP/1.1\r\nHost: 1")  # and nothing more
    reply = await conn.reply(WAIT)
    assert reply.status == 408
    assert await conn.closed(WAIT)


async def test_connections_past_the_cap_get_json_503_and_are_closed(edge_gateway) -> None:
    gw = edge_gateway(GATEWAY_MAX_CONNECTIONS="20", GATEWAY_HEADER_TIMEOUT="60")
    held = [await Conn.open(port_of(gw.url)) for _ in range(20)]
    await asyncio.sleep(0.2)  # all accepted
    extra = await Conn.open(port_of(gw.url))
    await extra.send(get("/-/health"))
    reply = await extra.reply(WAIT)
    assert reply.status == 503
    assert reply.json() == {
        "message": "503 Service Unavailable - too many connections, please retry"
    }
    assert reply.headers["retry-after"] == "5"
    assert await extra.closed(WAIT)
    for conn in held:
        conn.close()


async def test_connections_in_progress_are_served_while_new_ones_are_refused(
    edge_gateway,
) -> None:
    gw = edge_gateway(GATEWAY_MAX_CONNECTIONS="20", GATEWAY_HEADER_TIMEOUT="60")
    held = [await Conn.open(port_of(gw.url)) for _ in range(20)]
    await asyncio.sleep(0.2)
    refused = [await Conn.open(port_of(gw.url)) for _ in range(50)]
    for conn in held:
        await conn.send(get("/-/health"))
    assert [(await c.reply()).status for c in held] == [200] * 20
    assert all(await asyncio.gather(*(c.closed(WAIT) for c in refused)))


async def test_room_freed_below_the_cap_is_used_again(edge_gateway) -> None:
    gw = edge_gateway(GATEWAY_MAX_CONNECTIONS="20", GATEWAY_HEADER_TIMEOUT="60")
    held = [await Conn.open(port_of(gw.url)) for _ in range(20)]
    for conn in held:
        conn.close()

    async def served() -> bool:
        for _ in range(int(WAIT * 10)):
            try:
                if await health(gw.url) == 200:
                    return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        return False

    assert await served()


async def test_normal_traffic_is_served_beside_many_slow_heads(
    edge_gateway, world: World
) -> None:
    gw = edge_gateway(GATEWAY_HEADER_TIMEOUT="30", GATEWAY_MAX_CONNECTIONS="200")
    slow = [await Conn.open(port_of(gw.url)) for _ in range(150)]
    for conn in slow:
        await conn.send(b"PUT /api/v4/projects/1/packages/generic/p/1/f HTTP/1.1\r\n")
    url = f"{gw.url}/api/v4/projects/{world.project_id}/packages/generic/pkg/1.0/f.txt"
    async with aiohttp.ClientSession() as session:
        async with session.put(url, data=b"hello",
                               headers={"PRIVATE-TOKEN": world.tokens["developer"]}) as resp:
            assert resp.status == 201
        async with session.get(f"{gw.url}/-/health") as resp:
            assert resp.status == 200
    for conn in slow:
        conn.close()


def test_open_file_limit_is_raised_to_fit_the_connection_cap() -> None:
    import resource

    from gateway.edge import ensure_file_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3000:
        pytest.skip("the hard limit leaves no room to test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        ensure_file_limit(2000)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2000
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
