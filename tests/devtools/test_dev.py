"""`gateway dev` as a newcomer meets it: the printed curl lines work, files and the token
survive a restart, a second start on the same folder or on a taken port is refused before
anything starts, and the S3 server idles after an upload."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from gateway.devtools.processes import free_port
from tests.conftest import ROOT

START_TIMEOUT = 90.0


@dataclass
class Dev:
    proc: subprocess.Popen[bytes]
    data: Path
    port: int
    log: Path

    @property
    def text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def token(self) -> str:
        return re.findall(r"^  (glpat-\S+)$", self.text, re.MULTILINE)[-1]

    def curl_lines(self) -> list[str]:
        return re.findall(r"^  (curl .*)$", self.text, re.MULTILINE)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/v4{path}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(60)


def dev_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))}


def run_dev(data: Path, port: int, *extra: str, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`gateway dev` expected to stop by itself (a refusal)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "dev", "--data-dir", str(data), "--port", str(port),
         *extra], env=dev_env(), cwd=cwd or data.parent, capture_output=True, text=True,
        timeout=timeout)


def start_dev(data: Path, log: Path, port: int | None = None) -> Dev:
    """`gateway dev` in the background, returned once it prints its banner and serves."""
    port = port or free_port()
    offset = log.read_text().count("Press Ctrl-C") if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "dev", "--data-dir", str(data), "--port",
             str(port)], env=dev_env(), cwd=data.parent, stdout=out, stderr=subprocess.STDOUT)
    dev = Dev(proc, data, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    while not ('"msg":"serving"' in dev.text.rpartition("Press Ctrl-C")[2]
               and dev.text.count("Press Ctrl-C") > offset):
        if proc.poll() is not None or time.monotonic() > deadline:
            dev.stop()
            raise AssertionError(f"gateway dev did not start:\n{dev.text}")
        time.sleep(0.2)
    return dev


def curl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "--silent", "--show-error", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def shell(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(line, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """One `gateway dev` for the tests below that only need it running."""
    root = tmp_path_factory.mktemp("dev")
    running = start_dev(root / ".packgate", root / "dev.log")
    yield running
    assert running.stop() == 0
    assert "stopped." in running.text


def test_printed_curl_lines_upload_and_download_the_sample(dev: Dev) -> None:
    upload, download = dev.curl_lines()[:2]
    up = shell(upload, dev.data.parent)
    assert up.returncode == 0, up.stderr
    assert up.stdout == '{"message":"201 Created"}'
    down = shell(download, dev.data.parent)
    assert down.returncode == 0, down.stderr
    assert (dev.data.parent / "hello.txt.downloaded").read_text() == "Hello from packgate!\n"


def test_printed_ui_address_opens_the_package_browser_and_takes_the_token(dev: Dev) -> None:
    (address,) = re.findall(r"^  (http://\S+/-/ui/)$", dev.text, re.MULTILINE)
    page = curl("--fail-with-body", address)
    assert page.returncode == 0 and "<title>Projects · packgate</title>" in page.stdout
    form = curl("--fail-with-body", "--cookie-jar", "-", address + "sign_in")
    assert form.returncode == 0, form.stderr
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.stdout)[1]
    signin = re.search(r"__Host-packgate-signin\t(\S+)", form.stdout)[1]
    signed = curl("--include", "--cookie", f"__Host-packgate-signin={signin}",
                  "--data-urlencode", f"csrf_token={csrf}", "--data-urlencode",
                  f"token={dev.token}", address + "sign_in")
    assert " 303 " in signed.stdout.splitlines()[0]
    assert "__Host-packgate-session=" in signed.stdout


def _readme_block(after: str) -> str:
    """The first ```sh block of the README after the line starting with ``after``."""
    text = (ROOT / "README.md").read_text()
    rest = text[text.index("\n" + after):]
    return rest.split("```sh\n", 1)[1].split("```", 1)[0]


def test_readme_administration_examples_work_as_printed_against_gateway_dev(dev: Dev) -> None:
    script = "\n".join([
        _readme_block("With curl, as printed against a fresh `make dev`"),
        _readme_block("CI jobs: a CI system mints a job token"),
    ]).replace("http://127.0.0.1:8080", f"http://127.0.0.1:{dev.port}")
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=dev.data.parent,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"token":"glcbt-' in run.stdout

    def get(path: str) -> dict:
        out = curl("--fail-with-body", "--header", f"PRIVATE-TOKEN: {dev.token}", dev.url(path))
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)

    # The ids the README's comments promise.
    assert get("/groups/acme")["id"] == 3
    project = get("/projects/acme%2Ftools")
    assert (project["id"], project["packages_enabled"]) == (2, False)
    assert [u["id"] for u in get("/users?username=ci")] == [2]
    members = get("/projects/acme%2Ftools/members")
    assert any(m["id"] == 2 and m["access_level"] == 30 for m in members)


def _s3_server(dev: Dev) -> psutil.Process:
    return next(p for p in psutil.Process(dev.proc.pid).children() if p.name() == "rclone")


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def test_s3_server_idles_after_a_64_mib_upload_and_its_deletion(dev: Dev) -> None:
    big = dev.data.parent / "big.bin"
    big.write_bytes(os.urandom(64 * 2**20))
    url = dev.url("/projects/1/packages/generic/idle/1.0.0/big.bin")
    up = curl("--fail-with-body", "--header", f"PRIVATE-TOKEN: {dev.token}", "--upload-file",
              str(big), url)
    assert up.returncode == 0, up.stderr
    objects = dev.data / "s3" / "packages"
    assert any(p.is_file() for p in objects.rglob("*"))
    gone = curl("--fail-with-body", "--request", "DELETE", "--header",
                f"PRIVATE-TOKEN: {dev.token}", url)
    assert gone.returncode == 0, gone.stderr
    deadline = time.monotonic() + 30  # the deletion worker removes the object right away
    while any(p.is_file() and p.stat().st_size == big.stat().st_size
              for p in objects.rglob("*")):
        assert time.monotonic() < deadline, "the deleted file's object is still there"
        time.sleep(0.2)
    rclone = _s3_server(dev)
    before = _cpu_seconds(rclone)
    time.sleep(3)
    # A server left spinning burns about 3 CPU-seconds here; an idle one next to nothing.
    assert _cpu_seconds(rclone) - before < 0.5


def test_second_start_on_the_same_folder_is_refused_and_leaves_the_first_serving(
    dev: Dev,
) -> None:
    postmaster = (dev.data / "postgres" / "postmaster.pid").read_text().split()[0]
    second = run_dev(dev.data, free_port())
    assert second.returncode == 1
    assert f"is in use by gateway dev (pid {dev.proc.pid})" in second.stderr
    assert "--data-dir" in second.stderr
    assert "Traceback" not in second.stderr
    assert second.stdout == ""  # no banner, no token
    assert dev.proc.poll() is None
    assert (dev.data / "postgres" / "postmaster.pid").read_text().split()[0] == postmaster
    again = curl("--fail-with-body", "--header", f"PRIVATE-TOKEN: {dev.token}",
                 dev.url("/projects/1/packages"))
    assert again.returncode == 0, again.stderr


def test_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_dev(tmp_path / ".packgate", port)
    assert out.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in out.stderr
    assert "--port" in out.stderr and "PORT=" in out.stderr
    assert out.stdout == ""
    assert "starting" not in out.stderr
    assert not (tmp_path / ".packgate" / "postgres").exists()


def test_restart_keeps_files_and_the_administrator_token(tmp_path: Path) -> None:
    data, log = tmp_path / ".packgate", tmp_path / "dev.log"
    first = start_dev(data, log)
    try:
        token = first.token
        up = shell(first.curl_lines()[0], tmp_path)
        assert up.returncode == 0, up.stderr
    finally:
        assert first.stop() == 0
    assert oct(os.stat(data / "admin-token").st_mode & 0o777) == "0o600"

    second = start_dev(data, log, port=first.port)
    try:
        assert second.token == token
        again = curl("--fail-with-body", "--location", "--header", f"PRIVATE-TOKEN: {token}",
                     second.url("/projects/1/packages/generic/demo/1.0.0/hello.txt"))
        assert again.returncode == 0, again.stderr
        assert again.stdout == "Hello from packgate!\n"
        tokens = curl("--fail-with-body", "--header", f"PRIVATE-TOKEN: {token}",
                      second.url("/personal_access_tokens?state=active&per_page=100"))
        assert tokens.returncode == 0, tokens.stderr
        assert tokens.stdout.count('"name":"gateway dev"') == 1
    finally:
        assert second.stop() == 0
