"""`gateway cluster` as a user runs it: the printed curl lines work through nginx, Ctrl-C stops
every process it started, and a taken port is refused before anything starts."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from gateway.devtools.processes import free_port
from tests.conftest import ROOT

START_TIMEOUT = 120.0


def cluster_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))}


def test_printed_curl_lines_work_through_nginx_and_ctrl_c_stops_everything(
    tmp_path: Path,
) -> None:
    log = tmp_path / "cluster.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "cluster", "--data-dir",
             str(tmp_path / ".packgate-cluster"), "--port", str(free_port())],
            env=cluster_env(), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ctrl-C stops everything" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert "PgBouncer" in text and "transaction pooling" in text
        assert len(re.findall(r"^  gateway-\d ", text, re.MULTILINE)) == 3
        upload, download = re.findall(r"^  (curl .*)$", text, re.MULTILINE)
        started = psutil.Process(proc.pid).children(recursive=True)
        names = {p.name() for p in started}
        assert {"nginx", "pgbouncer", "postgres", "rclone"} <= names, names

        up = subprocess.run(upload, shell=True, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
        assert (up.returncode, up.stdout) == (0, '{"message":"201 Created"}'), up.stderr
        down = subprocess.run(download, shell=True, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert (tmp_path / "hello.txt.downloaded").read_text() == "Hello from packgate!\n"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(90)
    assert code == 0, log.read_text()
    assert log.read_text().rstrip().endswith("stopped.")
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == []


def test_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "gateway", "cluster", "--data-dir", str(tmp_path / "data"),
             "--port", str(port)], env=cluster_env(), cwd=ROOT, capture_output=True, text=True,
            timeout=60)
    assert out.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "data" / "postgres").exists()
