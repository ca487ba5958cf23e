"""The operator contract: commands, settings read once (`gateway dev`: tests/devtools)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from gateway import config
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


def test_settings_given_to_a_child_process_come_back_the_same() -> None:
    s = config.from_env({"GATEWAY_DB_PGBOUNCER": "true", "GATEWAY_MAX_FILE_SIZE": "5GiB",
                         "GATEWAY_BODY_READ_TIMEOUT": "2.5", "GATEWAY_INSTANCE_ID": "parent",
                         "GATEWAY_EXTERNAL_URL": "http://127.0.0.1:8080"})
    env = config.to_env(s)
    assert env["GATEWAY_DB_PGBOUNCER"] == "true"
    assert "GATEWAY_INSTANCE_ID" not in env  # each child names itself
    child = config.from_env(env, instance_id="parent")
    assert child == s
