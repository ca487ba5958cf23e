"""A PostgreSQL cluster in a folder, served on 127.0.0.1 by a postgres child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.devtools.processes import (
    LocalServiceError,
    Proc,
    Service,
    child_pids,
    free_port,
    log_tail,
    own_dir,
    pid_alive,
    port_is_free,
    unprivileged,
    wait_until,
)

_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def _newest_first(pattern: str, root: str) -> list[Path]:
    dirs = Path(root).glob(pattern)
    return sorted(dirs, key=lambda d: [int(n) for n in re.findall(r"\d+", d.parent.name)],
                  reverse=True)


def find_pg_binary(name: str) -> str:
    """Return the path of PostgreSQL program ``name`` (initdb, pg_ctl, postgres): PATH first,
    then the usual install folders, newest version first."""
    if found := shutil.which(name):
        return found
    dirs = [*_newest_first("*/bin", "/usr/lib/postgresql"), Path("/usr/local/pgsql/bin"),
            Path("/opt/homebrew/bin"), *_newest_first("postgresql*/bin", "/opt/homebrew/opt"),
            *_newest_first("postgresql*/bin", "/usr/local/opt")]
    for d in dirs:
        if os.access(d / name, os.X_OK):
            return str(d / name)
    raise LocalServiceError(
        f"PostgreSQL program {name!r} is not on PATH nor in the usual install folders; install "
        "the PostgreSQL server package (e.g. `apt-get install postgresql`)")


class PostgresCluster(Service):
    """A PostgreSQL cluster in ``data_dir`` served on 127.0.0.1 only (no Unix socket).

    The log goes to ``<data_dir>.log`` and the port is remembered in ``<data_dir>.port``
    (both beside ``data_dir``), so a restart reuses it when free. As root, programs run as
    the ``postgres`` system user, which gets ``data_dir`` and search rights on its ancestors.
    ``fast`` (tests only) turns off fsync, synchronous_commit and full_page_writes;
    ``settings`` adds or overrides server settings (``shared_buffers``, …).
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, fast: bool = False,
                 timeout: float = 60.0, settings: dict[str, object] | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.fast = fast
        self.timeout = timeout
        self.settings = dict(settings or {})
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self._port_file = self.data_dir.with_name(self.data_dir.name + ".port")
        self._proc: Proc | None = None

    def _run_kwargs(self) -> dict[str, Any]:
        return {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT, "cwd": "/",
                **unprivileged()}

    def init(self) -> None:
        """Guarantee ``data_dir`` holds a cluster (superuser ``postgres``, trust auth, UTF8);
        runs initdb only when ``PG_VERSION`` is missing."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        cmd = [find_pg_binary("initdb"), "-D", str(self.data_dir), "-U", "postgres",
               "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"]
        own_dir(self.data_dir, unprivileged())
        with open(self.log_path, "ab") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, timeout=self.timeout,
                                    **self._run_kwargs()).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        if rc != 0:
            raise LocalServiceError(f"initdb failed ({rc}){log_tail(self.log_path)}")

    def _postmaster_pid(self) -> int | None:
        """PID of a live postmaster for data_dir: ours, or one left by another process."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            if pid_alive(pid):
                return pid
        return None

    def is_running(self) -> bool:
        """True while a postmaster (started by us or not) serves ``data_dir``."""
        return self._postmaster_pid() is not None

    def owns_process(self) -> bool:
        """True while the postmaster serving ``data_dir`` is the one this object started."""
        return self._proc is not None and self._proc.poll() is None

    def _choose_port(self) -> int:
        if self.port is not None:
            return self.port
        with contextlib.suppress(OSError, ValueError):
            remembered = int(self._port_file.read_text())
            if port_is_free(remembered):
                return remembered
        return free_port()

    def _ready(self) -> bool:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        assert self._proc is not None
        return len(lines) >= 8 and lines[0] == str(self._proc.pid) and lines[7].strip() == "ready"

    def start(self) -> None:
        """Guarantee the server accepts connections at :attr:`url` (runs :meth:`init` first).
        A stale ``postmaster.pid`` left by a crash does not block it."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self.init()
        if (other := self._postmaster_pid()) is not None:
            raise LocalServiceError(f"postmaster {other} already serves {self.data_dir}")
        own_dir(self.data_dir, unprivileged())
        self.port = self._choose_port()
        self._port_file.write_text(f"{self.port}\n")
        settings = {"listen_addresses": "127.0.0.1", "port": self.port,
                    "unix_socket_directories": "", "max_connections": 200}
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= self.settings
        cmd = [find_pg_binary("postgres"), "-D", str(self.data_dir)]
        cmd += [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        # postgres is our direct child (not pg_ctl's) so we always reap it, even where PID 1
        # does not reap orphans; postgres itself discards a postmaster.pid of a dead process.
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, start_new_session=True,
                                          **self._run_kwargs())
        try:
            wait_until(self._ready, "postgres", self.timeout, self._proc, self.log_path)
        except BaseException:
            self.kill()
            raise

    def _wait_gone(self, pids: list[int]) -> None:
        deadline = time.monotonic() + self.timeout
        for pid in pids:
            if self._proc is not None and pid == self._proc.pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(max(0.0, deadline - time.monotonic()))
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                raise LocalServiceError(f"postgres process {pid} still runs after "
                                        f"{self.timeout:g}s{log_tail(self.log_path)}")
        self._proc = None

    def stop(self, mode: str = "fast") -> None:
        """Guarantee no postmaster serves ``data_dir`` (``mode``: smart, fast or immediate);
        a no-op when none does."""
        if mode not in _STOP_SIGNALS:
            raise ValueError(f"mode must be one of {', '.join(_STOP_SIGNALS)}")
        if (pid := self._postmaster_pid()) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _STOP_SIGNALS[mode])
        self._wait_gone([pid] if pid is not None else [])

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash, for fault tests). Returns once its children are
        gone too, so a following :meth:`start` is not refused for their shared memory."""
        pids = []
        if (pid := self._postmaster_pid()) is not None:
            pids = [pid, *child_pids(pid)]
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._wait_gone(pids)

    def database_url(self, name: str) -> str:
        """URL of database ``name`` as superuser ``postgres`` (trust auth, no password)."""
        if self.port is None:
            raise LocalServiceError("the port is chosen by start(); no URL before it")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{quote(name, safe='')}"

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        return self.database_url("postgres")

    def create_database(self, name: str) -> str:
        """Guarantee database ``name`` exists; return its URL."""
        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(self.url, timeout=self.timeout)
            try:
                if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                    await conn.execute('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
            finally:
                await conn.close(timeout=self.timeout)

        # A worker thread keeps this usable from code that already runs an event loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, create()).result()
        return self.database_url(name)
