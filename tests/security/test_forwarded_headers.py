"""Links and the access log believe forwarded headers only from GATEWAY_TRUSTED_PROXIES, and a
link never repeats a credential given in the query string."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import aiohttp
import pytest

from gateway.api.forwarded import is_trusted_proxy
from gateway.app import create_app
from gateway.config import Settings
from tests.conftest import World, start_gateway
from tests.package_helpers import hdr, insert_package

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
FORGED = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}


def packages_url(world: World, query: str = "per_page=1") -> str:
    return f"/api/v4/projects/{world.project_id}/packages?{query}"


async def two_packages(world: World) -> int:
    await insert_package(world.conn, world.project_id, "a", "1.0")
    return (await insert_package(world.conn, world.project_id, "b", "1.0"))["id"]


@pytest.fixture
async def behind_proxy(aiohttp_client, settings: Settings, world: World):
    """The gateway with loopback (the test client) as its trusted proxy."""
    return await aiohttp_client(create_app(settings.with_overrides(trusted_proxies=LOOPBACK)))


async def test_link_ignores_forwarded_host_from_an_untrusted_peer(client, world: World) -> None:
    await two_packages(world)
    resp = await client.get(packages_url(world),
                            headers={**hdr(world.tokens["developer"]), **FORGED})
    base = str(client.make_url("/")).rstrip("/")
    assert all(link.startswith(f"<{base}/api/v4/")
               for link in resp.headers["Link"].split(", "))
    assert "evil.example" not in resp.headers["Link"]


async def test_delete_link_ignores_forwarded_host_from_an_untrusted_peer(
    client, world: World
) -> None:
    pkg = await two_packages(world)
    resp = await client.get(f"/api/v4/projects/{world.project_id}/packages/{pkg}",
                            headers={**hdr(world.tokens["maintainer"]), **FORGED})
    assert (await resp.json())["_links"]["delete_api_path"] == str(
        client.make_url(f"/api/v4/projects/{world.project_id}/packages/{pkg}"))


async def test_link_uses_forwarded_host_and_scheme_from_a_trusted_proxy(
    behind_proxy, world: World
) -> None:
    await two_packages(world)
    resp = await behind_proxy.get(packages_url(world), headers={
        **hdr(world.tokens["developer"]),
        "X-Forwarded-Host": "packages.example.com", "X-Forwarded-Proto": "https",
    })
    assert resp.headers["Link"].startswith(
        f"<https://packages.example.com/api/v4/projects/{world.project_id}/packages?")


async def test_delete_link_uses_rfc7239_forwarded_from_a_trusted_proxy(
    behind_proxy, world: World
) -> None:
    pkg = await two_packages(world)
    resp = await behind_proxy.get(
        f"/api/v4/projects/{world.project_id}/packages/{pkg}",
        headers={**hdr(world.tokens["maintainer"]),
                 "Forwarded": 'for="198.51.100.7:4711";proto=https;host=pkgs.example.org'},
    )
    assert (await resp.json())["_links"]["delete_api_path"] == (
        f"https://pkgs.example.org/api/v4/projects/{world.project_id}/packages/{pkg}")


@pytest.mark.parametrize("host", ["evil.example/phish?", "a b", "x@evil.example", ""])
async def test_trusted_proxy_forwarding_a_host_that_is_no_host_name_is_ignored(
    behind_proxy, world: World, host: str
) -> None:
    await two_packages(world)
    resp = await behind_proxy.get(packages_url(world), headers={
        **hdr(world.tokens["developer"]), "X-Forwarded-Host": host,
    })
    base = str(behind_proxy.make_url("/")).rstrip("/")
    assert resp.headers["Link"].startswith(f"<{base}/api/v4/")


@pytest.mark.parametrize("param", ["private_token", "job_token", "access_token", "token",
                                   "bearer_token"])
async def test_link_never_repeats_a_credential_query_parameter(
    client, world: World, param: str
) -> None:
    await two_packages(world)
    token = world.tokens["developer"]
    if "job" in param or param == "token":
        developer = await world.conn.fetchval("SELECT id FROM users WHERE username = 'developer'")
        token = await world.job_token(developer)
    resp = await client.get(packages_url(world, f"per_page=1&{param}={token}&sort=asc"))
    assert resp.status == 200
    assert token not in resp.headers["Link"]
    assert param.lower() not in resp.headers["Link"].lower()
    assert "sort=asc" in resp.headers["Link"]


async def test_access_log_remote_is_the_client_a_trusted_proxy_reports(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    gw = start_gateway(settings, tmp_path, GATEWAY_TRUSTED_PROXIES="127.0.0.1")
    try:
        async with aiohttp.ClientSession() as session:
            # The client forged the first entry; the proxy appended the address it saw.
            for xff in ("203.0.113.9, 198.51.100.7", "198.51.100.8"):
                async with session.get(f"{gw.url}/-/health",
                                       headers={"X-Forwarded-For": xff}) as resp:
                    assert resp.status == 200
    finally:
        gw.stop()
    remotes = [r["remote"] for r in map(json.loads, gw.log().splitlines())
               if r.get("logger") == "aiohttp.access"]
    assert remotes == ["198.51.100.7", "198.51.100.8"]


async def test_access_log_remote_ignores_x_forwarded_for_from_an_untrusted_peer(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    gw = start_gateway(settings, tmp_path)
    try:
        async with aiohttp.ClientSession() as session, session.get(
            f"{gw.url}/-/health", headers={"X-Forwarded-For": "198.51.100.7"}
        ) as resp:
            assert resp.status == 200
    finally:
        gw.stop()
    remotes = [r["remote"] for r in map(json.loads, gw.log().splitlines())
               if r.get("logger") == "aiohttp.access"]
    assert remotes == ["127.0.0.1"]


@pytest.mark.parametrize(("address", "trusted"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("::ffff:10.1.2.3", True), ("2001:db8::5", True),
    ("11.0.0.1", False), ("2001:db9::1", False), ("unknown", False), (None, False), ("", False),
])
def test_is_trusted_proxy(address: str | None, trusted: bool) -> None:
    networks = tuple(ipaddress.ip_network(n) for n in ("127.0.0.1", "10.0.0.0/8", "2001:db8::/32"))
    assert is_trusted_proxy(address, networks) is trusted


def test_nobody_is_trusted_by_default() -> None:
    assert Settings().trusted_proxies == ()
    assert is_trusted_proxy("127.0.0.1", Settings().trusted_proxies) is False


async def test_request_id_from_a_trusted_proxy_is_kept(behind_proxy) -> None:
    resp = await behind_proxy.get("/-/health", headers={"X-Request-Id": "nginx-7f3a9c"})
    assert resp.headers["X-Request-Id"] == "nginx-7f3a9c"


async def test_request_id_from_an_untrusted_peer_is_replaced(client) -> None:
    resp = await client.get("/-/health", headers={"X-Request-Id": "forged-7f3a9c"})
    assert resp.headers["X-Request-Id"] != "forged-7f3a9c"
