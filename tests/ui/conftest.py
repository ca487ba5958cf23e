"""Headless Chromium (the OS's package, never a downloaded browser) driven by Playwright, and
axe-core (as axe-playwright-python ships it) for accessibility checks, both offline."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


class BrowserThread:
    """One Chromium for the run, on a thread of its own: Playwright's sync API runs an event
    loop in its thread, which would clash with the loop of the async fixtures. A test hands
    its scenario over with ``run`` (each scenario opens its own context: cookies, clipboard)."""

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[[Any], Any], Future] | None] = queue.Queue()
        self._started: Future = Future()
        self._thread = threading.Thread(target=self._serve, name="chromium", daemon=True)
        self._thread.start()
        self._started.result(timeout=120)

    def _serve(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                self._started.set_result(None)
                while (call := self._calls.get()) is not None:
                    scenario, done = call
                    try:
                        done.set_result(scenario(browser))
                    except BaseException as exc:
                        done.set_exception(exc)
                browser.close()
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
            raise

    def run(self, scenario: Callable[[Any], Any], timeout: float = 180) -> Any:
        done: Future = Future()
        self._calls.put((scenario, done))
        return done.result(timeout=timeout)

    def close(self) -> None:
        self._calls.put(None)
        self._thread.join(timeout=30)


@pytest.fixture(scope="session")
def chromium() -> Iterator[BrowserThread]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/os-packages.sh (Debian's chromium)")
    browser = BrowserThread()
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests leave pictures of the main pages (under pytest's tmp dir)."""
    return tmp_path_factory.mktemp("ui-screenshots")


@pytest.fixture(scope="session")
def axe_source() -> str:
    import axe_playwright_python

    source = Path(axe_playwright_python.__file__).with_name("axe.min.js")
    return source.read_text()
