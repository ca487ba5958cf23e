"""The web UI in a real browser: sign in, browse, copy a command and run it, download, delete;
what a Reporter is not offered, a forged form refused, and axe-core's verdict on each page."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import GatewayProcess, World
from tests.package_helpers import generic_url, hdr

HELLO = b"hello from packgate\n" * 100
SHA = hashlib.sha256(HELLO).hexdigest()


@pytest.fixture
def site(gateway: GatewayProcess, world: World) -> GatewayProcess:
    """acme/tools with demo 1.0.0 (hello.txt, notes.md) and demo 2.0.0."""
    token = world.tokens["maintainer"]
    for version, name, body in (("1.0.0", "hello.txt", HELLO), ("1.0.0", "notes.md", b"# n\n"),
                                ("2.0.0", "hello.txt", b"two\n")):
        resp = requests.put(gateway.url + generic_url(world.project_id, "demo", version, name),
                            data=body, headers=hdr(token), timeout=30)
        assert resp.status_code == 201, resp.text
    return gateway


def packages(site: GatewayProcess, world: World) -> list[tuple[str, str]]:
    resp = requests.get(f"{site.url}/api/v4/projects/{world.project_id}/packages",
                        headers=hdr(world.tokens["owner"]), timeout=30)
    return sorted((p["name"], p["version"]) for p in resp.json())


def files(site: GatewayProcess, world: World, package_id: int) -> list[str]:
    resp = requests.get(
        f"{site.url}/api/v4/projects/{world.project_id}/packages/{package_id}/package_files",
        headers=hdr(world.tokens["owner"]), timeout=30)
    return sorted(f["file_name"] for f in resp.json())


def new_context(browser, site: GatewayProcess, **options):
    ctx = browser.new_context(**{"accept_downloads": True,
                                 "viewport": {"width": 1280, "height": 900}, **options})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    ctx.set_default_timeout(20_000)
    return ctx


def sign_in(page, site: GatewayProcess, token: str) -> None:
    page.goto(site.url + "/")  # a browser asking for / lands in the UI
    page.get_by_role("banner").get_by_role("link", name="Sign in").click()
    page.get_by_label("Personal access token").fill(token)
    page.get_by_label("Personal access token").press("Enter")
    page.wait_for_url(site.url + "/-/ui/")


def axe_check(page, axe_source: str) -> None:
    """No serious or critical violation (axe-core's own ranking)."""
    page.evaluate(axe_source)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{page.url}: {bad}"


def shot(page, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_a_maintainer_signs_in_browses_copies_a_command_and_downloads(
        chromium, site, world, screenshots, axe_source, tmp_path) -> None:
    chromium.run(lambda browser: _browse_copy_download(browser, site, world, screenshots,
                                                       axe_source, tmp_path))


def _browse_copy_download(browser, site, world, screenshots, axe_source, tmp_path) -> None:
    context = new_context(browser, site)
    page = context.new_page()
    page.goto(site.url + "/-/ui/sign_in")
    shot(page, screenshots, "sign-in")
    axe_check(page, axe_source)
    sign_in(page, site, world.tokens["maintainer"])
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    shot(page, screenshots, "projects")
    axe_check(page, axe_source)

    page.get_by_role("link", name="acme/tools").click()
    page.get_by_label("Name").fill("DEM")
    page.get_by_label("Version").fill("1.0.0")
    page.get_by_role("button", name="Apply").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and "1.0.0" in rows.first.inner_text()
    shot(page, screenshots, "packages")
    axe_check(page, axe_source)

    rows.first.get_by_role("link", name="demo", exact=True).click()
    assert page.get_by_text(SHA).is_visible()
    shot(page, screenshots, "package")
    axe_check(page, axe_source)

    page.get_by_role("link", name="hello.txt", exact=True).click()
    shot(page, screenshots, "file")
    axe_check(page, axe_source)
    page.get_by_role("button", name="Copy the curl command").click()
    page.get_by_role("button", name="Copied").first.wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    url = f"{site.url}/api/v4/projects/{world.project_id}/packages/generic/demo/1.0.0/hello.txt"
    assert url in copied and "<your_access_token>" in copied
    command = copied.replace("<your_access_token>", world.tokens["reporter"])
    subprocess.run(command, shell=True, cwd=tmp_path, check=True, capture_output=True,
                   timeout=60)
    assert hashlib.sha256((tmp_path / "hello.txt").read_bytes()).hexdigest() == SHA

    page.get_by_role("button", name="Copy the GitLab CI command").click()
    ci = yaml.safe_load(page.evaluate("navigator.clipboard.readText()"))
    (job,) = ci.values()
    assert url in job["script"][0] and "${PACKGATE_TOKEN}" in job["script"][0]

    with page.expect_download() as download:
        page.get_by_role("link", name="Download", exact=True).click()
    saved = tmp_path / "downloaded"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "hello.txt"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == SHA
    context.close()


def test_the_pages_read_well_dark_and_on_a_phone(chromium, site, world, screenshots,
                                                  axe_source) -> None:
    chromium.run(lambda browser: _dark_phone(browser, site, world, screenshots, axe_source))


def _dark_phone(browser, site, world, screenshots, axe_source) -> None:
    ctx = new_context(browser, site, color_scheme="dark",
                      viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = ctx.new_page()
        sign_in(page, site, world.tokens["maintainer"])
        page.get_by_role("link", name="acme/tools").click()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(23, 24, 28)"  # the dark palette
        # Nothing wider than the phone's screen but the table's own scroll box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, screenshots, "packages-dark-phone")
        axe_check(page, axe_source)
        page.get_by_role("link", name="demo", exact=True).first.click()
        page.get_by_role("link", name="hello.txt", exact=True).click()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, screenshots, "file-dark-phone")
        axe_check(page, axe_source)
    finally:
        ctx.close()


def test_a_maintainer_deletes_a_file_then_the_package_after_confirming(
        chromium, site, world, screenshots) -> None:
    chromium.run(lambda browser: _deletes(browser, site, world, screenshots))


def _deletes(browser, site, world, screenshots) -> None:
    context = new_context(browser, site)
    page = context.new_page()
    sign_in(page, site, world.tokens["maintainer"])
    page.get_by_role("link", name="acme/tools").click()
    page.get_by_label("Version").fill("1.0.0")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name="demo", exact=True).click()
    package_id = int(page.url.rsplit("/", 1)[-1])

    page.get_by_role("link", name="notes.md", exact=True).click()
    page.get_by_role("link", name="Delete file").click()
    shot(page, screenshots, "confirm-delete")
    page.get_by_role("link", name="Cancel").click()  # changes nothing
    assert files(site, world, package_id) == ["hello.txt", "notes.md"]
    page.get_by_role("link", name="notes.md", exact=True).click()
    page.get_by_role("link", name="Delete file").click()
    page.get_by_role("button", name="Delete").click()
    assert page.get_by_role("status").inner_text() == "The file was deleted."
    assert files(site, world, package_id) == ["hello.txt"]

    page.get_by_role("link", name="Delete package").click()
    page.get_by_role("button", name="Delete").click()
    assert page.get_by_text("The package was deleted.").is_visible()
    assert packages(site, world) == [("demo", "2.0.0")]
    context.close()


class _ForgedSite(http.server.BaseHTTPRequestHandler):
    """Another origin (another port) whose page posts a delete form on load."""

    target = ""

    def do_GET(self) -> None:
        body = (f'<form id="f" method="post" action="{self.target}"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def forged_site() -> Iterator[tuple[str, type[_ForgedSite]]]:
    handler = type("Forged", (_ForgedSite,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    server.shutdown()
    server.server_close()


def test_a_reporter_sees_no_delete_and_a_forged_form_is_refused(
        chromium, site, world, forged_site) -> None:
    chromium.run(lambda browser: _reporter_and_forgery(browser, site, world, forged_site))


def _reporter_and_forgery(browser, site, world, forged_site) -> None:
    context = new_context(browser, site)
    page = context.new_page()
    sign_in(page, site, world.tokens["reporter"])
    page.get_by_role("link", name="acme/tools").click()
    page.get_by_role("link", name="demo", exact=True).first.click()
    page.get_by_role("link", name="hello.txt", exact=True).click()
    assert page.get_by_text("Delete").count() == 0
    # Typing the address of the confirmation page is no way round it.
    response = page.goto(page.url + "/delete")
    assert response is not None and response.status == 403

    context.close()
    maintainer = new_context(browser, site)
    try:
        victim = maintainer.new_page()
        sign_in(victim, site, world.tokens["maintainer"])
        victim.get_by_role("link", name="acme/tools").click()
        victim.get_by_role("link", name="demo", exact=True).first.click()
        forged_url, handler = forged_site
        handler.target = victim.url + "/delete"
        with victim.expect_response(handler.target) as answer:
            victim.goto(forged_url)
        assert answer.value.status == 403
        assert packages(site, world) == [("demo", "1.0.0"), ("demo", "2.0.0")]
    finally:
        maintainer.close()
