"""The ``@latest`` alias of downloads: the newest default version holding the file, by upload
time or (``?order=semver``) by semantic version."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.app import create_app
from tests.conftest import World
from tests.package_helpers import generic_url, hdr


async def put(client, world: World, version: str, body: bytes, file: str = "tool.tar.gz",
              query: str = "") -> None:
    resp = await client.put(generic_url(world.project_id, version=version, file=file) + query,
                            data=body, headers=hdr(world.tokens["developer"]))
    assert resp.status == 201, await resp.text()


def latest(world: World, file: str = "tool.tar.gz", query: str = "") -> str:
    return generic_url(world.project_id, version="@latest", file=file) + query


@pytest.fixture
async def proxy(aiohttp_client, settings, world: World):
    return await aiohttp_client(create_app(settings.with_overrides(download_mode="proxy")))


async def test_latest_is_the_newest_upload(proxy, world: World) -> None:
    await put(proxy, world, "2.0.0", b"two")
    await put(proxy, world, "10.0.0", b"ten")
    await put(proxy, world, "3.0.0", b"three")  # uploaded last
    resp = await proxy.get(latest(world), headers=hdr(world.tokens["reporter"]))
    assert resp.status == 200
    assert await resp.read() == b"three"
    assert resp.headers["X-Package-Version"] == "3.0.0"


async def test_order_semver_is_the_highest_semantic_version(proxy, world: World) -> None:
    await put(proxy, world, "2.0.0", b"two")
    await put(proxy, world, "10.0.0", b"ten")
    await put(proxy, world, "11.0.0-rc.1", b"rc")
    await put(proxy, world, "not-semver", b"odd")
    resp = await proxy.get(latest(world, query="?order=semver"),
                           headers=hdr(world.tokens["reporter"]))
    assert await resp.read() == b"rc"  # 11.0.0-rc.1 > 10.0.0 in semver precedence
    await put(proxy, world, "11.0.0", b"eleven")
    resp = await proxy.get(latest(world, query="?order=semver"),
                           headers=hdr(world.tokens["reporter"]))
    assert await resp.read() == b"eleven"


async def test_hidden_versions_and_versions_without_the_file_are_passed_over(
    proxy, world: World
) -> None:
    await put(proxy, world, "1.0.0", b"one")
    await put(proxy, world, "2.0.0", b"hidden", query="?status=hidden")
    await put(proxy, world, "3.0.0", b"other file", file="other.txt")
    resp = await proxy.get(latest(world), headers=hdr(world.tokens["reporter"]))
    assert await resp.read() == b"one"


async def test_head_through_latest(proxy, world: World) -> None:
    await put(proxy, world, "1.0.0", b"one")
    resp = await proxy.head(latest(world), headers=hdr(world.tokens["reporter"]))
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "3"
    assert resp.headers["X-Package-Version"] == "1.0.0"


async def test_the_redirect_names_the_real_file(client, world: World) -> None:
    await put(client, world, "1.0.0", b"one")
    resp = await client.get(latest(world), headers=hdr(world.tokens["reporter"]),
                            allow_redirects=False)
    assert resp.status == 302
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query["response-content-disposition"] == [
        "attachment; filename=\"tool.tar.gz\"; filename*=UTF-8''tool.tar.gz"
    ]


async def test_no_default_version_with_the_file_is_gitlabs_404(client, world: World) -> None:
    await put(client, world, "1.0.0", b"one", file="other.txt")
    resp = await client.get(latest(world), headers=hdr(world.tokens["reporter"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}


async def test_latest_reveals_nothing_to_a_caller_who_may_not_read(client, world: World) -> None:
    await put(client, world, "1.0.0", b"one")
    resp = await client.get(latest(world), headers=hdr(world.tokens["outsider"]))
    assert resp.status == 404
    assert "X-Package-Version" not in resp.headers


async def test_an_unknown_order_is_a_400(client, world: World) -> None:
    resp = await client.get(latest(world, query="?order=newest"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "order does not have a valid value"}


async def test_latest_cannot_be_uploaded_to(client, world: World) -> None:
    resp = await client.put(latest(world), data=b"x", headers=hdr(world.tokens["developer"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "package_version is invalid"}


async def test_a_version_named_latest_is_an_ordinary_version(client, world: World) -> None:
    await put(client, world, "latest", b"plain")
    await put(client, world, "9.0.0", b"newer")
    resp = await client.get(generic_url(world.project_id, version="latest", file="tool.tar.gz"),
                            headers=hdr(world.tokens["reporter"]), allow_redirects=False)
    assert resp.status == 302
    assert "X-Package-Version" not in resp.headers
