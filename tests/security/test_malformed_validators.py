"""Conditional and range headers a hostile client sends on downloads: never a 500, never a
partial answer it did not ask for properly, and nothing to callers who may not read."""

from __future__ import annotations

import pytest

from gateway.app import create_app
from tests.conftest import World
from tests.package_helpers import generic_url, hdr

BODY = b"0123456789" * 100

ODD_HEADERS = [
    {"Range": "bytes=" + "9" * 5000 + "-"},  # past Python's int() digit limit
    {"Range": "bytes=-" + "9" * 5000},
    {"Range": "bytes=0-" + "9" * 5000},
    {"Range": "bytes=\u0661\u0662-"},  # non-ASCII digits
    {"Range": "bytes=0-9", "If-Range": "W/\"weak\""},
    {"Range": "bytes=0-9", "If-Range": "Sat, 01 Jan 99999 00:00:00 GMT"},
    {"If-Modified-Since": "Sat, 01 Jan 99999 00:00:00 GMT"},
    {"If-Modified-Since": "\u00e9" * 100},
    {"If-None-Match": '"' * 4000},
    {"If-None-Match": ", ,,, ,"},
]


@pytest.fixture
async def proxy(aiohttp_client, settings, world: World):
    client = await aiohttp_client(create_app(settings.with_overrides(download_mode="proxy")))
    resp = await client.put(generic_url(world.project_id), data=BODY,
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    return client


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_odd_validator_headers_get_the_whole_file(proxy, world: World, method: str
                                                        ) -> None:
    for headers in ODD_HEADERS:
        sent = {k: v.encode().decode("latin-1") for k, v in headers.items()}
        resp = await proxy.request(method, generic_url(world.project_id),
                                   headers={**hdr(world.tokens["reporter"]), **sent})
        assert resp.status == 200, headers
        if method == "GET":
            assert await resp.read() == BODY, headers


async def test_ranges_and_304_are_for_readers_only(proxy, world: World) -> None:
    for headers in ({"Range": "bytes=0-1"}, {"If-None-Match": "*"}):
        resp = await proxy.get(generic_url(world.project_id),
                               headers={**hdr(world.tokens["outsider"]), **headers})
        assert resp.status == 404
        assert await resp.json() == {"message": "404 Not Found"}
