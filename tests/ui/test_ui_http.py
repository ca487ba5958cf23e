"""The web UI's pages over plain HTTP: filters, commands, downloads, deletes, the setting.
What a hostile visitor tries is in tests/security/test_web_ui.py."""

from __future__ import annotations

import hashlib

import pytest

from gateway.app import create_app
from gateway.config import ConfigError, from_env
from tests.ui.helpers import (
    UI,
    UiClient,
    csrf_of,
    file_id,
    package_id,
    package_page,
    stock,
    ui_http_client,
)


async def test_filters_are_gitlabs(http, stocked) -> None:
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    base = f"{UI}/projects/{stocked.project_id}/packages"
    page = await (await browser.get(base + "?package_name=DEM&package_version=2.0.0")).text()
    assert page.count(">demo<") == 1 and "2.0.0" in page and "1.0.0" not in page
    bad = await browser.get(base + "?status=bogus")
    assert bad.status == 400 and "status does not have a valid value" in await bad.text()


async def test_order_and_pages(http, stocked) -> None:
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    base = f"{UI}/projects/{stocked.project_id}/packages?order_by=version&sort=asc&per_page=1"
    first = await (await browser.get(base)).text()
    assert "1.0.0" in first and "Page 1 of 2" in first and 'rel="next"' in first
    second = await (await browser.get(base + "&page=2")).text()
    assert "2.0.0" in second and "1.0.0" not in second and 'rel="prev"' in second


async def test_the_file_page_has_commands_with_the_real_url_and_no_token(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    fid = await file_id(stocked.conn, pkg, "hello.txt")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["maintainer"])
    page = await (await browser.get(f"{package_page(stocked, pkg)}/files/{fid}")).text()
    url = f"/api/v4/projects/{stocked.project_id}/packages/generic/demo/1.0.0/hello.txt"
    assert f"http://127.0.0.1:{http.port}{url}" in page
    for tool in ("curl --fail-with-body", "wget --header", "project.generic_packages.download",
                 "script:"):
        assert tool in page
    assert stocked.tokens["maintainer"] not in page
    assert hashlib.sha256(b"hello\n").hexdigest() in page


async def test_the_package_page_lists_files_with_their_checksums_and_versions(
        http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    page = await (await browser.get(package_page(stocked, pkg))).text()
    for digest in (hashlib.md5(b"hello\n").hexdigest(), hashlib.sha1(b"hello\n").hexdigest(),
                   hashlib.sha256(b"hello\n").hexdigest()):
        assert digest in page
    assert "other.bin" in page and "10 B" in page and ">2.0.0<" in page


async def test_download_is_the_apis_redirect(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    fid = await file_id(stocked.conn, pkg, "hello.txt")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    resp = await browser.get(f"{package_page(stocked, pkg)}/files/{fid}/download")
    assert resp.status == 302
    assert resp.headers["X-Checksum-SHA256"] == hashlib.sha256(b"hello\n").hexdigest()
    async with http.session.get(resp.headers["Location"]) as s3:
        assert await s3.read() == b"hello\n"
    assert await stocked.conn.fetchval(
        "SELECT last_downloaded_at IS NOT NULL FROM packages WHERE id = $1", pkg)


async def test_a_maintainer_deletes_a_package_with_the_form(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["maintainer"])
    confirm = await browser.get(package_page(stocked, pkg) + "/delete")
    assert confirm.status == 200
    resp = await browser.post(package_page(stocked, pkg) + "/delete",
                              {"csrf_token": csrf_of(await confirm.text())})
    assert resp.status == 303
    assert await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0") is None


async def test_public_projects_are_browsable_without_signing_in(http, stocked) -> None:
    await stocked.conn.execute("UPDATE projects SET visibility = 'public' WHERE id = $1",
                               stocked.project_id)
    browser = UiClient(http)
    assert "acme/tools" in await (await browser.get(UI + "/")).text()
    page = await browser.get(f"{UI}/projects/{stocked.project_id}/packages")
    assert page.status == 200
    assert "demo" in await page.text() and "Delete" not in await page.text()


async def test_root_sends_browsers_to_the_ui_and_api_clients_a_404(http, world) -> None:
    resp = await http.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/-/ui/"
    api = await http.get("/", headers={"Accept": "application/json"}, allow_redirects=False)
    assert api.status == 404 and (await api.json()) == {"error": "404 Not Found"}


async def test_the_ui_can_be_turned_off(aiohttp_client, settings, db) -> None:
    off = await aiohttp_client(create_app(settings.with_overrides(ui=False)))
    assert (await off.get(UI + "/")).status == 404
    resp = await off.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 404


@pytest.mark.parametrize("env", [{"GATEWAY_UI": "maybe"}, {"GATEWAY_UI_SESSION_HOURS": "0"},
                                 {"GATEWAY_UI_SESSION_HOURS": "x"}])
def test_ui_settings_are_validated(env) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        from_env(env)


async def test_download_in_proxy_mode_sends_the_bytes(aiohttp_client, settings, world) -> None:
    http = await ui_http_client(aiohttp_client, settings.with_overrides(download_mode="proxy"))
    await stock(http, world)
    pkg = await package_id(world.conn, world.project_id, "demo", "1.0.0")
    fid = await file_id(world.conn, pkg, "hello.txt")
    browser = UiClient(http)
    await browser.sign_in(world.tokens["reporter"])
    resp = await browser.get(f"{package_page(world, pkg)}/files/{fid}/download")
    assert resp.status == 200 and await resp.read() == b"hello\n"
    assert resp.headers["X-Checksum-SHA256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="hello.txt"')


async def test_commands_use_the_external_url(aiohttp_client, settings, world) -> None:
    http = await ui_http_client(
        aiohttp_client, settings.with_overrides(external_url="https://pkg.example.com"))
    await stock(http, world)
    pkg = await package_id(world.conn, world.project_id, "demo", "1.0.0")
    fid = await file_id(world.conn, pkg, "hello.txt")
    browser = UiClient(http)
    await browser.sign_in(world.tokens["reporter"])
    page = await (await browser.get(f"{package_page(world, pkg)}/files/{fid}")).text()
    assert (f"https://pkg.example.com/api/v4/projects/{world.project_id}/packages/generic/"
            "demo/1.0.0/hello.txt") in page
    assert 'gitlab.Gitlab(&#34;https://pkg.example.com&#34;' in page
