"""What a hostile visitor tries on the web UI (``/-/ui/``): stealing or replaying a session,
forging forms, finding private projects, getting offered what they may not do, odd ids."""

from __future__ import annotations

import pytest

from gateway.identity import tokens
from tests.ui.helpers import (
    UI,
    UiClient,
    csrf_of,
    file_id,
    package_id,
    package_page,
    )

SESSION = "__Host-packgate-session"


# --- the session cookie -------------------------------------------------------------------


async def test_session_cookie_is_host_only_secure_httponly_samesite(http, world) -> None:
    browser = UiClient(http)
    resp = await browser.sign_in(world.tokens["maintainer"])
    cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith(SESSION + "="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= flags
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "domain" not in flags


async def test_the_sign_in_forms_cookie_has_the_same_flags(http, world) -> None:
    resp = await UiClient(http).get(UI + "/sign_in")
    cookie = resp.headers["Set-Cookie"].lower()
    assert cookie.startswith("__host-packgate-signin=")
    assert all(flag in cookie for flag in ("secure", "httponly", "samesite=lax", "path=/"))


async def test_the_token_is_kept_nowhere_but_its_digest(http, world) -> None:
    token = world.tokens["maintainer"]
    browser = UiClient(http)
    await browser.sign_in(token)
    session_id = browser.cookies[SESSION]
    assert token not in session_id
    row = await world.conn.fetchrow("SELECT * FROM ui_sessions")
    stored = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                      for v in row.values())
    assert token.encode() not in stored and session_id.encode() not in stored
    page = await (await browser.get(UI + "/")).text()
    assert token not in page and session_id not in page


async def test_every_sign_in_gets_a_new_session_id(http, world) -> None:
    browser = UiClient(http)
    browser.cookies[SESSION] = "chosen-by-the-attacker-" + "x" * 20
    await browser.sign_in(world.tokens["maintainer"])
    first = browser.cookies[SESSION]
    assert not first.startswith("chosen-by-the-attacker")
    other = UiClient(http)
    await other.sign_in(world.tokens["maintainer"])
    assert other.cookies[SESSION] != first


async def test_a_wrong_token_does_not_sign_in(http, world) -> None:
    browser = UiClient(http)
    page = await browser.get(UI + "/sign_in")
    resp = await browser.post(UI + "/sign_in", {"csrf_token": csrf_of(await page.text()),
                                                "token": "glpat-not-a-real-token"})
    assert resp.status == 401
    assert "not a valid personal access token" in await resp.text()
    assert SESSION not in browser.cookies


async def test_job_tokens_do_not_sign_in(http, world) -> None:
    user = await world.user("ci")
    await world.member(user.id, 40)
    browser = UiClient(http)
    page = await browser.get(UI + "/sign_in")
    resp = await browser.post(UI + "/sign_in", {"csrf_token": csrf_of(await page.text()),
                                                "token": await world.job_token(user.id)})
    assert resp.status == 401 and SESSION not in browser.cookies


async def test_signing_out_ends_the_session_on_the_server(http, world) -> None:
    browser = UiClient(http)
    await browser.sign_in(world.tokens["maintainer"])
    stolen = browser.cookies[SESSION]
    resp = await browser.post(UI + "/sign_out", {"csrf_token": await browser.csrf()})
    assert resp.status == 303
    assert SESSION not in browser.cookies
    assert await world.conn.fetchval("SELECT count(*) FROM ui_sessions") == 0
    replay = UiClient(http)
    replay.cookies[SESSION] = stolen
    page = await replay.get(f"{UI}/projects/{world.project_id}/packages")
    assert page.status == 404  # anonymous again: the private project is not there


@pytest.mark.parametrize("change", [
    "UPDATE personal_access_tokens SET revoked = true WHERE id = $1",
    "UPDATE personal_access_tokens SET expires_at = current_date - 1 WHERE id = $1",
    "UPDATE users SET state = 'blocked' WHERE id = "
    "(SELECT user_id FROM personal_access_tokens WHERE id = $1)",
])
async def test_a_dead_token_ends_its_session(http, world, change) -> None:
    user = await world.user("temp")
    await world.member(user.id, 40)
    issued = await tokens.issue_personal_access_token(world.conn, user.id, "t", ["api"])
    browser = UiClient(http)
    await browser.sign_in(issued.token)
    assert (await browser.get(f"{UI}/projects/{world.project_id}/packages")).status == 200
    await world.conn.execute(change, issued.record.id)
    resp = await browser.get(f"{UI}/projects/{world.project_id}/packages")
    assert resp.status == 303 and resp.headers["Location"].endswith("/sign_in?ended=1")
    assert SESSION not in browser.cookies
    assert await world.conn.fetchval("SELECT count(*) FROM ui_sessions") == 0


async def test_an_expired_session_is_anonymous(http, world) -> None:
    browser = UiClient(http)
    await browser.sign_in(world.tokens["maintainer"])
    await world.conn.execute("UPDATE ui_sessions SET expires_at = now() - interval '1 second'")
    resp = await browser.get(f"{UI}/projects/{world.project_id}/packages")
    assert resp.status == 404 and SESSION not in browser.cookies


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/",
                                    "/\\evil.example", "/api/v4/user"])
async def test_sign_in_sends_nowhere_but_the_ui(http, world, target) -> None:
    browser = UiClient(http)
    page = await browser.get(UI + "/sign_in")
    resp = await browser.post(UI + "/sign_in", {
        "csrf_token": csrf_of(await page.text()), "token": world.tokens["maintainer"],
        "next": target})
    assert resp.status == 303 and resp.headers["Location"] == "/-/ui/"


# --- CSRF ---------------------------------------------------------------------------------


async def test_sign_in_without_the_form_token_is_refused(http, world) -> None:
    browser = UiClient(http)
    await browser.get(UI + "/sign_in")
    resp = await browser.post(UI + "/sign_in", {"token": world.tokens["maintainer"]})
    assert resp.status == 403
    assert SESSION not in browser.cookies


async def test_sign_in_with_a_form_token_from_another_browser_is_refused(http, world) -> None:
    attacker = UiClient(http)
    token = csrf_of(await (await attacker.get(UI + "/sign_in")).text())
    victim = UiClient(http)
    await victim.get(UI + "/sign_in")
    resp = await victim.post(UI + "/sign_in", {"csrf_token": token,
                                               "token": world.tokens["outsider"]})
    assert resp.status == 403 and SESSION not in victim.cookies


@pytest.mark.parametrize("token", [None, "", "0" * 64])
async def test_a_delete_without_the_right_csrf_token_is_refused(http, stocked, token) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["maintainer"])
    resp = await browser.post(package_page(stocked, pkg) + "/delete",
                              {} if token is None else {"csrf_token": token})
    assert resp.status == 403
    assert await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0") == pkg


async def test_another_sessions_csrf_token_is_refused(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    fid = await file_id(stocked.conn, pkg, "hello.txt")
    attacker = UiClient(http)
    await attacker.sign_in(stocked.tokens["owner"])
    victim = UiClient(http)
    await victim.sign_in(stocked.tokens["maintainer"])
    for path in (package_page(stocked, pkg), f"{package_page(stocked, pkg)}/files/{fid}"):
        resp = await victim.post(path + "/delete", {"csrf_token": await attacker.csrf()})
        assert resp.status == 403
    assert await file_id(stocked.conn, pkg, "hello.txt") == fid


async def test_sign_out_without_the_form_token_keeps_the_session(http, world) -> None:
    browser = UiClient(http)
    await browser.sign_in(world.tokens["maintainer"])
    assert (await browser.post(UI + "/sign_out", {})).status == 403
    assert await world.conn.fetchval("SELECT count(*) FROM ui_sessions") == 1


# --- who sees what ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "outsider"])
async def test_a_private_project_looks_exactly_like_a_missing_one(http, stocked, who) -> None:
    browser = UiClient(http)
    if who != "anonymous":
        await browser.sign_in(stocked.tokens[who])
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    fid = await file_id(stocked.conn, pkg, "hello.txt")
    for tail in ("/packages", f"/packages/{pkg}", f"/packages/{pkg}/files/{fid}",
                 f"/packages/{pkg}/files/{fid}/download", f"/packages/{pkg}/delete"):
        private = await browser.get(f"{UI}/projects/{stocked.project_id}{tail}")
        missing = await browser.get(f"{UI}/projects/987654{tail}")
        assert private.status == missing.status, tail
        assert (private.headers.get("Location", "").split("?")[0]
                == missing.headers.get("Location", "").split("?")[0])
        assert await private.text() == await missing.text()
        # A confirmation page sends an anonymous visitor to sign in first, whatever the id.
        assert private.status == (303 if tail.endswith("/delete") and who == "anonymous"
                                  else 404)
    listing = await (await browser.get(UI + "/")).text()
    assert "acme/tools" not in listing
    assert "acme/tools" not in await (await browser.get(UI + "/?search=tools")).text()


@pytest.mark.parametrize("path", [
    "/projects/99999999999999999999/packages",
    "/projects/1/packages/99999999999999999999",
    "/projects/1/packages/1/files/99999999999999999999",
    "/projects/%D9%A1/packages",  # ARABIC-INDIC DIGIT ONE
])
async def test_ids_no_row_can_have_are_not_found(http, stocked, path) -> None:
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["owner"])
    resp = await browser.get(UI + path)
    assert resp.status == 404
    assert resp.content_type == "text/html"


async def test_hidden_packages_are_listed_only_when_asked_for(http, stocked) -> None:
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    base = f"{UI}/projects/{stocked.project_id}/packages"
    assert "secret-tool" not in await (await browser.get(base)).text()
    hidden = await (await browser.get(base + "?status=hidden")).text()
    assert "secret-tool" in hidden and ">demo<" not in hidden
    pkg = await package_id(stocked.conn, stocked.project_id, "secret-tool", "0.1")
    assert (await browser.get(package_page(stocked, pkg))).status == 404  # as the API


async def test_a_reporter_is_offered_no_delete_and_cannot_post_one(http, stocked) -> None:
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    fid = await file_id(stocked.conn, pkg, "hello.txt")
    browser = UiClient(http)
    await browser.sign_in(stocked.tokens["reporter"])
    file_page = f"{package_page(stocked, pkg)}/files/{fid}"
    for path in (f"{UI}/projects/{stocked.project_id}/packages", package_page(stocked, pkg),
                 file_page):
        page = await browser.get(path)
        assert page.status == 200 and "Delete" not in await page.text()
    for path in (package_page(stocked, pkg), file_page):
        assert (await browser.get(path + "/delete")).status == 403
        resp = await browser.post(path + "/delete", {"csrf_token": await browser.csrf()})
        assert resp.status == 403
    assert await file_id(stocked.conn, pkg, "hello.txt") == fid


async def test_a_read_api_token_is_offered_no_delete(http, stocked) -> None:
    user = await stocked.user("reader")
    await stocked.member(user.id, 40)
    token = await stocked.token(user.id, ["read_api"])
    pkg = await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0")
    browser = UiClient(http)
    await browser.sign_in(token)
    page = await browser.get(package_page(stocked, pkg))
    assert page.status == 200 and "Delete" not in await page.text()
    resp = await browser.post(package_page(stocked, pkg) + "/delete",
                              {"csrf_token": await browser.csrf()})
    assert resp.status == 403 and "api scope" in await resp.text()
    assert await package_id(stocked.conn, stocked.project_id, "demo", "1.0.0") == pkg


async def test_pages_forbid_framing_scripts_from_elsewhere_and_caching(http, world) -> None:
    resp = await UiClient(http).get(UI + "/")
    assert resp.status == 200
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_project_text_is_escaped(http, world) -> None:
    await world.conn.execute(
        "UPDATE projects SET visibility = 'public', description = $2 WHERE id = $1",
        world.project_id, "<script>alert(1)</script>")
    page = await (await UiClient(http).get(UI + "/")).text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


async def test_a_huge_form_is_refused_unread(http, world) -> None:
    browser = UiClient(http)
    await browser.get(UI + "/sign_in")
    resp = await browser.post(UI + "/sign_in", {"token": "x" * 100_000})
    assert resp.status == 413
