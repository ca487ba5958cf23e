"""``X-Request-Id``: on every answer and every log line of its request; a client's own id is
kept only from a trusted proxy, and only when it is a short plain token."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import aiohttp
import pytest
from aiohttp import web

from gateway import logs, requestids
from tests.conftest import GatewayProcess, World

HEX32 = r"[0-9a-f]{32}"


async def test_every_answer_carries_a_new_request_id(client, world: World) -> None:
    answers = [
        await client.get("/-/health"),
        await client.get("/no/such/route"),
        await client.put(f"/api/v4/projects/{world.project_id}/packages/generic/p/1/f.txt",
                         data=b"x"),  # 401: no token
    ]
    assert [a.status for a in answers] == [200, 404, 401]
    ids = [a.headers["X-Request-Id"] for a in answers]
    assert all(requestids.valid_request_id(i) and len(i) == 32 for i in ids)
    assert len(set(ids)) == len(ids)


async def test_a_request_id_sent_by_a_client_that_is_no_proxy_is_replaced(client) -> None:
    resp = await client.get("/-/health", headers={"X-Request-Id": "chosen-by-the-client"})
    assert resp.headers["X-Request-Id"] != "chosen-by-the-client"


def _app_behind_a_trusted_proxy(lines: io.StringIO) -> web.Application:
    """The middleware with every peer trusted, and a handler that logs."""
    log = logging.getLogger("tests.request_ids")

    async def handler(request: web.Request) -> web.StreamResponse:
        log.info("handling")
        await asyncio.create_task(asyncio.sleep(0))  # a task the request starts
        asyncio.get_running_loop().call_soon(lambda: None)
        response = web.StreamResponse()
        await response.prepare(request)  # a streamed answer: headers leave first
        await response.write(b"ok")
        return response

    app = web.Application(middlewares=[requestids.middleware(lambda request: True)])
    app.on_response_prepare.append(requestids.on_response_prepare)
    app.router.add_get("/", handler)
    return app


@pytest.fixture
def log_lines():
    """What the JSON formatter writes while the test runs."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_a_trusted_proxys_request_id_is_kept_on_the_answer_and_the_log_lines(
    aiohttp_client, log_lines: io.StringIO
) -> None:
    client = await aiohttp_client(_app_behind_a_trusted_proxy(log_lines))
    resp = await client.get("/", headers={"X-Request-Id": "nginx-7f3a9c"})
    assert resp.headers["X-Request-Id"] == "nginx-7f3a9c"
    lines = [json.loads(ln) for ln in log_lines.getvalue().splitlines()]
    handling = [ln for ln in lines if ln["msg"] == "handling"]
    assert [ln["request_id"] for ln in handling] == ["nginx-7f3a9c"]


@pytest.mark.parametrize("given", [
    "x" * 129,  # too long
    "two words",
    'quote"d',
    "{\"level\":\"error\"}",
    "caf\u00e9",  # not ASCII
    "",
])
async def test_a_trusted_proxys_request_id_that_is_not_a_plain_token_is_replaced(
    aiohttp_client, log_lines: io.StringIO, given: str
) -> None:
    client = await aiohttp_client(_app_behind_a_trusted_proxy(log_lines))
    resp = await client.get("/", headers={"X-Request-Id": given})
    rid = resp.headers["X-Request-Id"]
    assert rid != given
    assert len(rid) == 32
    assert given not in [json.loads(ln).get("request_id")
                         for ln in log_lines.getvalue().splitlines()]


async def test_keep_alive_requests_do_not_share_an_id(aiohttp_client, log_lines) -> None:
    client = await aiohttp_client(_app_behind_a_trusted_proxy(log_lines))
    first = await client.get("/", headers={"X-Request-Id": "first"})
    second = await client.get("/")  # same connection, no id given
    assert first.headers["X-Request-Id"] == "first"
    assert second.headers["X-Request-Id"] != "first"


async def test_every_log_line_of_an_upload_carries_its_request_id(
    gateway: GatewayProcess, world: World
) -> None:
    url = f"{gateway.url}/api/v4/projects/{world.project_id}/packages/generic/p/1.0/f.txt"
    async with aiohttp.ClientSession() as session:
        async with session.put(url, data=b"hello", headers={
            "PRIVATE-TOKEN": world.tokens["developer"]}) as resp:
            assert resp.status == 201
            rid = resp.headers["X-Request-Id"]
        async with session.get(f"{gateway.url}/-/health") as other:
            other_rid = other.headers["X-Request-Id"]
    gateway.stop()  # every line written
    lines = [json.loads(ln) for ln in gateway.log().splitlines() if ln.startswith("{")]
    mine = [ln["msg"] for ln in lines if ln.get("request_id") == rid]
    assert "upload stored" in mine
    assert "request" in mine  # the access log line
    assert [ln["msg"] for ln in lines if ln.get("request_id") == other_rid] == ["request"]
