"""The web UI's security over plain HTTP: session cookie, CSRF, what is hidden and from whom."""

from __future__ import annotations

import hashlib

import pytest
from aiohttp import DummyCookieJar

from gateway.app import create_app
from gateway.config import ConfigError, from_env
from gateway.identity import tokens
from tests.conftest import World
from tests.ui.helpers import UI, UiClient, csrf_of, file_id, package_id, upload


@pytest.fixture
async def http(aiohttp_client, settings, db):
    return await aiohttp_client(create_app(settings), cookie_jar=DummyCookieJar())


@pytest.fixture
async def stocked(http, world: World) -> World:
    """acme/tools (private) with demo 1.0.0 (two files), demo 2.0.0 and a hidden package."""
    token = world.tokens["maintainer"]
    await upload(http, token, world.project_id, "demo", "1.0.0", "hello.txt", b"hello\n")
    await upload(http, token, world.project_id, "demo", "1.0.0", "other.bin", b"\x00" * 10)
    await upload(http, token, world.project_id, "demo", "2.0.0", "hello.txt", b"hello 2\n")
    await upload(http, token, world.project_id, "secret-tool", "0.1", "x.txt", b"x",
                 status="hidden")
    return world


def _package_page(world: World, pkg: int) -> str:
    return f"{UI}/projects/{world.project_id}/packages/{pkg}"


# --- the session cookie -------------------------------------------------------------------


async def test_session_cookie_is_host_only_secure_httponly_samesite(http, world) -> None:
    browser = UiClient(http)
    resp = await browser.sign_in(world.tokens["maintainer"])
    cookie = next(h for h in resp.headers.getall("Set-Cookie")
                  if h.startswith("__Host-packgate-session="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= flags
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "domain" not in flags


async def test_the_token_is_kept_nowhere_but_its_digest(http, world) -> None:
    token = world.tokens["maintainer"]
    browser = UiClient(http)
    await browser.sign_in(token)
    session_id = browser.cookies["__Host-packgate-session"]
    assert token not in session_id
    row = await world.conn.fetchrow("SELECT * FROM ui_sessions")
    assert bytes(row["id_digest"]) != session_id.encode()
    assert token.encode() not in b"".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row.values())
    page = await (await browser.get(UI + "/")).text()
    assert token not in page and session_id not in page


async def test_a_wrong_token_does_not_sign_in(http, world) -> None:
    browser = UiClient(http)
    page = await browser.get(UI + "/sign_in")
    resp = await browser.post(UI + "/sign_in", {"csrf_token": csrf_of(await page.text()),
                                                "token": "glpat-not-a-real-token"})
    assert resp.status == 401
    assert "not a valid personal access token" in await resp.text()
    assert "__Host-packgate-session" not in browser.cookies


async def test_signing_out_ends_the_session_on_the_server(http, world) -> None:
    browser = UiClient(http)
    await browser.sign_in(world.tokens["maintainer"])
    stolen = browser.cookies["__Host-packgate-session"]
    resp = await browser.post(UI + "/sign_out", {"csrf_token": await browser.csrf()})
    assert resp.status == 303
    assert "__Host-packgate-session" not in browser.cookies
    assert await world.conn.fetchval("SELECT count(*) FROM ui_sessions") == 0
    replay = UiClient(http)
    replay.cookies["__Host-packgate-session"] = stolen
    page = await replay.get(f"{UI}/projects/{world.project_id}/packages")
    assert page.status == 404  # anonymous again: the private project is not there


async def test_a_revoked_token_ends_its_session(http, world) -> None:
    user = await world.user("temp")
    await world.member(user.id, 40)
    issued = await tokens.issue_personal_access_token(world.conn, user.id, "t", ["api"])
    browser = UiClient(http)
    await browser.sign_in(issued.token)
    assert (await browser.get(f"{UI}/projects/{world.project_id}/packages")).status == 200
    await world.conn.execute("UPDATE personal_access_tokens SET revoked = true WHERE id = $1",
                             issued.record.id)
    resp = await browser.get(f"{UI}/projects/{world.project_id}/packages")
    assert resp.status == 303 and resp.headers["Location"].endswith("/sign_in?ended=1")
    assert "__Host-packgate-session" not in browser.cookies


# --- CSRF ---------------------------------------------------------------------------------


async def test_sign_in_without_the_form_token_is_refused(http, world) -> None:
    browser = UiClient(http)
    await browser.get(UI + "/sign_in")
    resp = await browser.post(UI + "/sign_in", {"token": world.tokens["maintainer"]})
    assert resp.status == 403
    assert "__Host-packgate-session" not in browser.cookies


@pytest.mark.parametrize("token", [None, "", "0" * 64])
async def test_a_delete_without_the_right_csrf_token_is_refused(http, stocked, token) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["maintainer"])
    resp = await browser.post(_package_page(stocked, pkg) + "/delete",
                              {} if token is None else {"csrf_token": token})
    assert resp.status == 403
    assert await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0") == pkg


async def test_another_sessions_csrf_token_is_refused(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    attacker = UiClient(http)
    await attacker.sign_in(stocked.tokens["owner"])
    victim = UiClient(http)
    await victim.sign_in(stocked.tokens["maintainer"])
    resp = await victim.post(_package_page(stocked, pkg) + "/delete",
                             {"csrf_token": await attacker.csrf()})
    assert resp.status == 403


async def test_a_maintainer_deletes_a_package_with_the_form(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["maintainer"])
    confirm = await browser.get(_package_page(stocked, pkg) + "/delete")
    assert confirm.status == 200
    resp = await browser.post(_package_page(stocked, pkg) + "/delete",
                              {"csrf_token": csrf_of(await confirm.text())})
    assert resp.status == 303
    assert await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0") is None


# --- who sees what ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "outsider"])
async def test_a_private_project_looks_exactly_like_a_missing_one(http, stocked, who) -> None:
    browser = UiClient(http)
    if who != "anonymous":
        await browser.sign_in(stocked.tokens[who])
    private = await browser.get(f"{UI}/projects/{stocked.project_id}/packages")
    missing = await browser.get(f"{UI}/projects/987654/packages")
    assert private.status == missing.status == 404
    assert await private.text() == await missing.text()
    listing = await (await browser.get(UI + "/")).text()
    assert "acme/tools" not in listing
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    assert (await browser.get(_package_page(stocked, pkg))).status == 404


async def test_public_projects_are_browsable_without_signing_in(http, stocked) -> None:
    await stocked.conn.execute("UPDATE projects SET visibility = 'public' WHERE id = $1",
                               stocked.project_id)
    browser = UiClient(http)
    assert "acme/tools" in await (await browser.get(UI + "/")).text()
    page = await browser.get(f"{UI}/projects/{stocked.project_id}/packages")
    assert page.status == 200
    assert "demo" in await page.text()
    assert "Delete" not in await page.text()


async def test_hidden_packages_are_listed_only_when_asked_for(http, stocked) -> None:
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    base = f"{UI}/projects/{stocked.project_id}/packages"
    assert "secret-tool" not in await (await browser.get(base)).text()
    hidden = await (await browser.get(base + "?status=hidden")).text()
    assert "secret-tool" in hidden and ">demo<" not in hidden
    pkg = await package_id(stocked.conn, stocked.project_id, "secret-tool", "0.1")
    assert (await browser.get(_package_page(stocked, pkg))).status == 404  # as the API


async def test_filters_are_gitlabs(http, stocked) -> None:
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    base = f"{UI}/projects/{stocked.project_id}/packages"
    page = await (await browser.get(base + "?package_name=DEM&package_version=2.0.0")).text()
    assert page.count(">demo<") == 1 and "2.0.0" in page and "1.0.0" not in page
    bad = await browser.get(base + "?status=bogus")
    assert bad.status == 400 and "status does not have a valid value" in await bad.text()


async def test_a_reporter_is_offered_no_delete_and_cannot_post_one(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    for path in (f"{UI}/projects/{stocked.project_id}/packages", _package_page(stocked, pkg)):
        page = await browser.get(path)
        assert page.status == 200 and "Delete" not in await page.text()
    assert (await browser.get(_package_page(stocked, pkg) + "/delete")).status == 403
    resp = await browser.post(_package_page(stocked, pkg) + "/delete",
                              {"csrf_token": await browser.csrf()})
    assert resp.status == 403
    assert await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0") == pkg


async def test_a_read_api_token_is_offered_no_delete(http, stocked) -> None:
    user = await stocked.user("reader")
    await stocked.member(user.id, 40)
    token = await stocked.token(user.id, ["read_api"])
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    browser = UiClient(http)
    await browser.sign_in(token)
    page = await browser.get(_package_page(stocked, pkg))
    assert page.status == 200 and "Delete" not in await page.text()
    resp = await browser.post(_package_page(stocked, pkg) + "/delete",
                              {"csrf_token": await browser.csrf()})
    assert resp.status == 403


# --- files and downloads ------------------------------------------------------------------


async def test_the_file_page_has_commands_with_the_real_url_and_no_token(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    fid = await file_id(stocked.conn, pkg, "hello.txt")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["maintainer"])
    page = await (await browser.get(f"{_package_page(stocked, pkg)}/files/{fid}")).text()
    url = f"/api/v4/projects/{stocked.project_id}/packages/generic/demo/1.0.0/hello.txt"
    assert f"http://127.0.0.1:{http.port}{url}" in page
    for tool in ("curl --fail-with-body", "wget --header", "project.generic_packages.download",
                 "script:"):
        assert tool in page
    assert stocked.tokens["maintainer"] not in page
    assert hashlib.sha256(b"hello\n").hexdigest() in page


async def test_download_is_the_apis_redirect(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    fid = await file_id(stocked.conn, pkg, "hello.txt")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    resp = await browser.get(f"{_package_page(stocked, pkg)}/files/{fid}/download")
    assert resp.status == 302
    assert resp.headers["X-Checksum-SHA256"] == hashlib.sha256(b"hello\n").hexdigest()
    async with http.session.get(resp.headers["Location"]) as s3:
        assert await s3.read() == b"hello\n"
    assert await stocked.conn.fetchval(
        "SELECT last_downloaded_at IS NOT NULL FROM packages WHERE id = $1", pkg)
    anonymous = UiClient(http)
    assert (await anonymous.get(f"{_package_page(stocked, pkg)}/files/{fid}/download")
            ).status == 404


async def test_pages_forbid_framing_scripts_from_elsewhere_and_caching(http, world) -> None:
    resp = await UiClient(http).get(UI + "/")
    assert resp.status == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_project_text_is_escaped(http, world) -> None:
    await world.conn.execute(
        "UPDATE projects SET visibility = 'public', description = $2 WHERE id = $1",
        world.project_id, "<script>alert(1)</script>")
    page = await (await UiClient(http).get(UI + "/")).text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


# --- the setting, and / -------------------------------------------------------------------


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
