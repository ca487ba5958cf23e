"""The operator contract: commands, settings read once, `gateway dev` used with curl."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import config
from gateway.localservices import free_port, wait_for_port
from tests.conftest import ROOT


def run_gateway(*args: str, env: dict[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env={**base, **(env or {})}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )


def test_malformed_setting_stops_the_start_naming_the_variable() -> None:
    out = run_gateway("serve", env={"GATEWAY_MAX_FILE_SIZE": "lots", "GATEWAY_S3_BUCKET": "b",
                                    "GATEWAY_DATABASE_URL": "postgresql://x/y"})
    assert out.returncode == 2
    assert "GATEWAY_MAX_FILE_SIZE" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_gateway_variable_stops_the_start() -> None:
    out = run_gateway("serve", env={"GATEWAY_MAX_FILESIZE": "1"})
    assert out.returncode == 2
    assert "GATEWAY_MAX_FILESIZE is not a setting" in out.stderr


def test_serve_without_a_database_url_says_it_is_required() -> None:
    out = run_gateway("serve", env={"GATEWAY_S3_BUCKET": "b"})
    assert out.returncode == 2
    assert "GATEWAY_DATABASE_URL is required" in out.stderr


def test_settings_parse_sizes_and_choices() -> None:
    s = config.from_env({"GATEWAY_MAX_FILE_SIZE": "5GiB", "GATEWAY_DOWNLOAD_MODE": "proxy",
                         "GATEWAY_PART_SIZE": "16M", "PATH": "/bin"})
    assert s.max_file_size == 5 * 2**30
    assert s.download_mode == "proxy"
    assert s.part_size == 16 * 2**20
    with pytest.raises(config.ConfigError, match="GATEWAY_DOWNLOAD_MODE"):
        config.from_env({"GATEWAY_DOWNLOAD_MODE": "stream"})
    with pytest.raises(dataclass_error()):
        s.port = 1  # type: ignore[misc]


def test_a_health_port_among_the_serving_ports_stops_the_start() -> None:
    with pytest.raises(config.ConfigError, match="GATEWAY_HEALTH_PORT"):
        config.from_env({"GATEWAY_PORT": "8080", "GATEWAY_HEALTH_PORT": "8080"})
    with pytest.raises(config.ConfigError, match="GATEWAY_HEALTH_PORT"):
        config.from_env({"GATEWAY_PORT": "8081", "GATEWAY_HEALTH_PORT": "8080",
                         "GATEWAY_WORKERS": "2"})
    assert config.from_env({"GATEWAY_HEALTH_PORT": "8081"}).health_port == 8081


def dataclass_error() -> type[Exception]:
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError


def test_migrate_twice_is_harmless(database_url: str) -> None:
    for _ in range(2):
        out = run_gateway("migrate", env={"GATEWAY_DATABASE_URL": database_url})
        assert out.returncode == 0, out.stderr
        assert "schema is up to date" in out.stdout


def test_bootstrap_prints_a_new_token_as_its_last_line(database_url: str) -> None:
    tokens = []
    for _ in range(2):
        out = run_gateway("admin", "bootstrap", env={"GATEWAY_DATABASE_URL": database_url})
        assert out.returncode == 0, out.stderr
        tokens.append(out.stdout.strip().splitlines()[-1])
    assert all(re.fullmatch(r"glpat-[A-Za-z0-9_-]{20}", t) for t in tokens)
    assert tokens[0] != tokens[1]


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True,
                          text=True, timeout=60)


def _start_dev(data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "dev", "--data-dir", str(data), "--port", str(port)],
            env=env, cwd=data.parent, stdout=out, stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(60)


def test_gateway_dev_prints_curl_lines_that_work_and_keeps_data_across_restarts(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    log = tmp_path / "dev.log"
    port = free_port()
    proc = _start_dev(data, port, log)
    try:
        wait_for_port("127.0.0.1", port, 90)
        deadline = time.monotonic() + 30
        while "curl" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log.read_text()
        upload, download = re.findall(r"^  (curl .*)$", text, re.MULTILINE)[:2]
        up = subprocess.run(upload, shell=True, cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
        assert up.returncode == 0, up.stderr
        assert up.stdout == '{"message":"201 Created"}'
        down = subprocess.run(download, shell=True, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)
        assert down.returncode == 0, down.stderr
        assert (tmp_path / "hello.txt.downloaded").read_text() == "Hello from packgate!\n"
    finally:
        assert _stop(proc) == 0
    assert "stopped." in log.read_text()

    # A second start on the same folder finds the file uploaded before.
    proc = _start_dev(data, port, log)
    try:
        wait_for_port("127.0.0.1", port, 90)
        deadline = time.monotonic() + 30
        while len(re.findall(r"glpat-\S+", log.read_text())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        token = re.findall(r"^  (glpat-\S+)$", log.read_text(), re.MULTILINE)[-1]
        again = _curl("--fail-with-body", "--location", "--header", f"PRIVATE-TOKEN: {token}",
                      f"http://127.0.0.1:{port}/api/v4/projects/1/packages/generic/demo/1.0.0/"
                      "hello.txt")
        assert again.returncode == 0, again.stderr
        assert again.stdout == "Hello from packgate!\n"
    finally:
        assert _stop(proc) == 0
