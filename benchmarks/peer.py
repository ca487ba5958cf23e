"""The OCI distribution registry (Debian's ``docker-registry``, Go, S3 storage driver) as a
peer: the same bytes pushed as a blob into the same S3 server, by the same client.

It runs only against moto: with ``rclone serve s3`` (1.75) its upload resume breaks. It is
started without any ``AWS_*`` variable (``AWS_CA_BUNDLE`` above all: the Go SDK then wants a
bundle even for plain HTTP), its credentials and endpoint coming from its own config file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gateway.devtools.processes import free_port, wait_until

PROGRAM = "docker-registry"
REPOSITORY = "bench/files"


def find_registry() -> str | None:
    """The registry's program, or None when it is not installed (``make bench`` installs it
    with ``scripts/os-packages.sh bench``)."""
    return shutil.which(PROGRAM)


_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    accesskey: {access_key}
    secretkey: {secret_key}
    region: us-east-1
    regionendpoint: {endpoint}
    bucket: {bucket}
    rootdirectory: /oci-registry
    secure: false
    v4auth: true
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
health:
  storagedriver:
    enabled: false
"""


@dataclass
class Registry:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def start_registry(program: str, work: Path, *, endpoint: str, bucket: str, access_key: str,
                   secret_key: str) -> Registry:
    port = free_port()
    config = work / f"oci-registry-{port}.yml"
    config.write_text(_CONFIG.format(access_key=access_key, secret_key=secret_key,
                                     endpoint=endpoint, bucket=bucket, port=port))
    # Nothing of ours: no AWS_* variable may reach the Go SDK (see the module's doc).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "REGISTRY_", "GATEWAY_"))}
    log_path = work / f"oci-registry-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([program, "serve", str(config)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    reg = Registry(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until(lambda: _answers(reg.url + "/v2/"), "docker-registry", 30, proc, log_path)
    except BaseException:
        reg.stop()
        raise
    return reg


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * 2**20):
            h.update(block)
    return "sha256:" + h.hexdigest()


def blob_push_cmds(reg_url: str) -> list[str]:
    """The POST that opens a blob upload (its Location is where the bytes go)."""
    return ["curl", "-sS", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code} %header{location}",
            f"{reg_url}/v2/{REPOSITORY}/blobs/uploads/"]


def push_blob(reg: Registry, path: Path, digest: str) -> float:
    """One monolithic blob push with curl (POST, then PUT of the whole file with its
    digest, as ``docker push`` does for a layer); its wall time in seconds."""
    start = time.perf_counter()
    out = subprocess.run(blob_push_cmds(reg.url), capture_output=True, text=True, timeout=60)
    status, _, location = out.stdout.strip().partition(" ")
    if status != "202" or not location:
        raise RuntimeError(f"registry POST answered {status}: {out.stderr}")
    if location.startswith("/"):
        location = reg.url + location
    sep = "&" if "?" in location else "?"
    put = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
         "-H", "Content-Type: application/octet-stream", "--upload-file", str(path),
         f"{location}{sep}digest={digest}"],
        capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if put.stdout.strip() != "201":
        raise RuntimeError(f"registry PUT answered {put.stdout.strip()}: {put.stderr} "
                           f"(log: {reg.log_path})")
    return seconds
