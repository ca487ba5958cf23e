"""Proxied downloads (``GATEWAY_DOWNLOAD_MODE=proxy``) when the stream breaks (found by the chaos
soak, benchmarks/soak): S3 sending fewer bytes than it announced (its object deleted while it
streams) is a JSON 503 before the headers and a cut connection after them; a client hanging up
mid-download is no error of the gateway's. Never a 500."""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import MiB, Settings
from gateway.devtools.processes import free_port
from tests.conftest import World
from tests.test_download import upload, url

BODY = 3 * MiB


class TruncatingS3:
    """Forwards to S3; answers every GetObject with its headers and only ``keep`` bytes of
    the body, then closes the connection."""

    def __init__(self, upstream: str, keep: int) -> None:
        self.upstream, self.keep, self.port = upstream, keep, free_port()

    async def __aenter__(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        skip = {"content-length", "transfer-encoding", "connection"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         headers=headers, data=await request.read()) as up:
            payload = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in skip}
            if request.method != "GET" or request.query or up.status != 200:
                return web.Response(status=up.status, body=payload, headers=out)
            resp = web.StreamResponse(status=200, headers=out)
            resp.content_length = len(payload)
            await resp.prepare(request)
            await resp.write(payload[:self.keep])
            assert request.transport is not None
            request.transport.close()
            return resp


@pytest.fixture
async def stored(aiohttp_client, settings: Settings, world: World) -> bytes:
    body = os.urandom(BODY)
    await upload(await aiohttp_client(create_app(settings)), world, body)
    return body


async def proxying_client(aiohttp_client, settings: Settings, s3: str):
    return await aiohttp_client(create_app(settings.with_overrides(
        download_mode="proxy", s3_endpoint_url=s3, s3_max_attempts=1)))


def unexpected(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()} {r.exc_text or r.exc_info}"[:3000] for r in caplog.records
            if r.levelno >= logging.ERROR]


async def test_s3_cutting_the_object_before_any_byte_is_a_json_503(
    aiohttp_client, settings: Settings, world: World, stored: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TruncatingS3(settings.s3_endpoint_url or "", keep=0) as s3:
        client = await proxying_client(aiohttp_client, settings, s3)
        resp = await client.get(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]})
        assert resp.status == 503
        assert await resp.json() == {
            "message": "503 Service Unavailable - object storage is unavailable"}
    assert unexpected(caplog) == []


async def test_s3_cutting_the_object_mid_stream_cuts_the_download_short(
    aiohttp_client, settings: Settings, world: World, stored: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TruncatingS3(settings.s3_endpoint_url or "", keep=BODY // 2) as s3:
        client = await proxying_client(aiohttp_client, settings, s3)
        resp = await client.get(url(world), headers={"PRIVATE-TOKEN": world.tokens["reporter"]})
        assert resp.status == 200
        assert resp.content_length == BODY
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()  # fewer bytes than announced: never a file that looks whole
    assert unexpected(caplog) == []


async def test_client_hanging_up_mid_download_is_no_gateway_error(
    aiohttp_client, settings: Settings, world: World, stored: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(download_mode="proxy")))
    server = client.server
    port = server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {url(world)} HTTP/1.1\r\nHost: x\r\nPRIVATE-TOKEN: "
                 f"{world.tokens['reporter']}\r\n\r\n".encode())
    await writer.drain()
    await reader.readexactly(64 * 1024)  # the headers and the first bytes
    writer.transport.abort()  # gone, with megabytes still to send
    await asyncio.sleep(2)  # the gateway's next writes fail
    assert unexpected(caplog) == []
