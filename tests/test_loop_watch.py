"""A stalled event loop does not go unnoticed: it is logged with the stack it is stuck in, and
health, answered from a thread on its own port, turns red until the loop runs again."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.devtools.processes import free_port
from gateway.loopwatch import HealthListener, LoopWatch
from tests.conftest import World, start_gateway

pytestmark = pytest.mark.timeout(90)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_until(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def test_a_blocked_loop_turns_health_red_and_logs_the_blocking_stack(
    settings: Settings, world: World, tmp_path: Path
) -> None:
    health_port = free_port()
    gw = start_gateway(settings, tmp_path, argv=["-m", "tests.faults.loop_blocker"],
                       GATEWAY_HEALTH_PORT=str(health_port))
    health = f"http://127.0.0.1:{health_port}/-/health"
    try:
        wait_until(lambda: get(health)[0] == 200, "health listener answering")
        assert get(health) == (200, {"status": "ok"})
        blocker = threading.Thread(target=lambda: urllib.request.urlopen(urllib.request.Request(
            gw.url + "/-/test/block-loop?seconds=3", method="POST"), timeout=30).read())
        blocker.start()
        answers: list[tuple[int, dict]] = []
        wait_until(lambda: answers.append(get(health)) or answers[-1][0] == 503,
                   "health red while the loop is blocked")
        assert answers[-1][1]["message"] == "503 Service Unavailable - the event loop is stalled"
        blocker.join(30)
        wait_until(lambda: get(health)[0] == 200, "health green once the loop runs again")
        assert get(gw.url + "/-/health") == (200, {"status": "ok"})
        wait_until(lambda: "event loop running again" in gw.log(), "the recovery logged")
    finally:
        gw.stop()
    blocked = [json.loads(line) for line in gw.log().splitlines()
               if '"event loop blocked"' in line]
    assert len(blocked) == 1
    assert blocked[0]["level"] == "warning"
    assert "block_loop" in blocked[0]["stack"] and "time.sleep(seconds)" in blocked[0]["stack"]


def test_health_listener_answers_only_the_health_path() -> None:
    watch = LoopWatch()
    with HealthListener(watch, "127.0.0.1", 0) as listener:
        # The watch was never started: its loop has not beaten since it was made.
        time.sleep(1.1)
        assert get(f"http://127.0.0.1:{listener.port}/-/health")[0] == 503
        assert get(f"http://127.0.0.1:{listener.port}/metrics") == (
            404, {"error": "404 Not Found"})


async def test_loop_watch_measures_how_late_the_loop_runs() -> None:
    async with LoopWatch(stall_after=0.5) as watch:
        await asyncio.sleep(0.3)
        assert not watch.state().stalled
        time.sleep(1.0)  # noqa: ASYNC251 - the stall being measured
        await asyncio.sleep(0.3)
        state = watch.state()
    assert state.stalls == 1
    assert state.max_lag >= 0.9
    assert not state.stalled


async def test_an_unarmed_watch_counts_no_stall_while_the_app_starts() -> None:
    async with LoopWatch(stall_after=0.3, armed=False) as watch:
        time.sleep(0.8)  # noqa: ASYNC251 - start-up holding the loop
        await asyncio.sleep(0.2)
        assert watch.state().stalls == 0 and not watch.state().stalled
        watch.arm()
        time.sleep(0.8)  # noqa: ASYNC251 - a stall once serving
        await asyncio.sleep(0.3)
        assert watch.state().stalls == 1
