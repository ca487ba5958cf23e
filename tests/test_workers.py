"""``gateway serve`` with several workers: N processes on one port, stopped together."""

from __future__ import annotations

import signal
import time
import urllib.request
from pathlib import Path

from gateway.config import Settings
from gateway.devtools.processes import child_pids
from tests.conftest import World, start_gateway


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def test_two_workers_run_as_two_child_processes(settings: Settings, world: World,
                                               tmp_path: Path) -> None:
    gw = start_gateway(settings, tmp_path, GATEWAY_WORKERS="2")
    try:
        wait_for(lambda: len(child_pids(gw.proc.pid)) == 2, "two workers")
    finally:
        gw.stop()


def test_every_connection_is_answered_with_two_workers(settings: Settings, world: World,
                                                       tmp_path: Path) -> None:
    gw = start_gateway(settings, tmp_path, GATEWAY_WORKERS="2")
    try:
        statuses = []
        for _ in range(20):
            with urllib.request.urlopen(f"{gw.url}/-/health", timeout=10) as resp:
                statuses.append(resp.status)
        assert statuses == [200] * 20
    finally:
        gw.stop()


def test_sigterm_to_the_parent_stops_every_worker(settings: Settings, world: World,
                                                  tmp_path: Path) -> None:
    gw = start_gateway(settings, tmp_path, GATEWAY_WORKERS="2")
    try:
        wait_for(lambda: len(child_pids(gw.proc.pid)) == 2, "two workers")
        workers = child_pids(gw.proc.pid)
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers),
                 "workers gone")
    finally:
        gw.stop()
