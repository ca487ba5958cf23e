"""A browser-like HTTP client for the web UI: keeps its cookies by hand (aiohttp's jar would
not send ``Secure`` cookies over plain HTTP) and reads forms' CSRF tokens out of pages."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp import DummyCookieJar

from gateway.app import create_app
from tests.package_helpers import generic_url, hdr

UI = "/-/ui"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found[1]


class UiClient:
    """One browser: its cookies, as Set-Cookie left them."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []

    def _remember(self, resp: Any) -> None:
        for header in resp.headers.getall("Set-Cookie", []):
            self.set_cookie_headers.append(header)
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "text/html"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return {**headers, **(extra or {})}

    async def get(self, path: str, **kw: Any) -> Any:
        resp = await self.client.get(path, headers=self._headers(kw.pop("headers", None)),
                                     allow_redirects=False, **kw)
        self._remember(resp)
        return resp

    async def post(self, path: str, data: dict[str, str], **kw: Any) -> Any:
        resp = await self.client.post(path, data=data,
                                      headers=self._headers(kw.pop("headers", None)),
                                      allow_redirects=False, **kw)
        self._remember(resp)
        return resp

    async def sign_in(self, token: str) -> Any:
        page = await self.get(UI + "/sign_in")
        assert page.status == 200
        resp = await self.post(UI + "/sign_in",
                               {"csrf_token": csrf_of(await page.text()), "token": token})
        assert resp.status == 303, await resp.text()
        return resp

    async def csrf(self, path: str = UI + "/") -> str:
        return csrf_of(await (await self.get(path)).text())


async def upload(client: Any, token: str, project_id: int, name: str, version: str,
                 file: str, body: bytes, status: str | None = None) -> None:
    url = generic_url(project_id, name, version, file) + (f"?status={status}" if status else "")
    resp = await client.put(url, data=body, headers=hdr(token))
    assert resp.status == 201, await resp.text()


async def package_id(conn: Any, project_id: int, name: str, version: str) -> int:
    return await conn.fetchval(
        "SELECT id FROM packages WHERE project_id = $1 AND name = $2 AND version = $3",
        project_id, name, version)


async def file_id(conn: Any, pkg_id: int, name: str) -> int:
    return await conn.fetchval(
        "SELECT max(id) FROM package_files WHERE package_id = $1 AND file_name = $2",
        pkg_id, name)


def package_page(world: Any, pkg: int) -> str:
    return f"{UI}/projects/{world.project_id}/packages/{pkg}"


async def ui_http_client(aiohttp_client: Any, settings: Any) -> Any:
    """The gateway in this process; cookies are the UiClient's business."""
    return await aiohttp_client(create_app(settings), cookie_jar=DummyCookieJar())


async def stock(http: Any, world: Any) -> Any:
    """acme/tools (private) with demo 1.0.0 (two files), demo 2.0.0 and a hidden package."""
    token = world.tokens["maintainer"]
    await upload(http, token, world.project_id, "demo", "1.0.0", "hello.txt", b"hello\n")
    await upload(http, token, world.project_id, "demo", "1.0.0", "other.bin", b"\x00" * 10)
    await upload(http, token, world.project_id, "demo", "2.0.0", "hello.txt", b"hello 2\n")
    await upload(http, token, world.project_id, "secret-tool", "0.1", "x.txt", b"x",
                 status="hidden")
    return world


# The fixtures of both UI test modules (plain HTTP and the security cases), imported by them.
@pytest.fixture
async def http(aiohttp_client, settings, db):
    return await ui_http_client(aiohttp_client, settings)


@pytest.fixture
async def stocked(http, world):
    return await stock(http, world)
