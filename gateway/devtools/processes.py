"""What every local service shares: free ports, bounded waits, process facts, the user to run
as, and one error that says what is missing or what went wrong (with the tail of the log).

Every child runs in its own session (Ctrl-C reaches only the parent, which stops children in
order) and logs to a file; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

# PostgreSQL and PgBouncer refuse to run as root; as root, they (and nginx) run as this user,
# which the PostgreSQL server package creates.
SERVICE_USER = "postgres"

Proc = subprocess.Popen[bytes]


class LocalServiceError(Exception):
    """A local dependency could not be found, started or stopped; the message says which and,
    for a missing program, how to install it."""


class Service:
    """Something that can be started and stopped, also as a context manager."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ChildService(Service):
    """A service that is one child process of ours."""

    _proc: Proc | None = None

    @property
    def pid(self) -> int | None:
        """The process's id while it runs."""
        return self._proc.pid if self.is_running() else None  # type: ignore[union-attr]

    def is_running(self) -> bool:
        """True while the child process exists (paused or not)."""
        return self._proc is not None and self._proc.poll() is None


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` of a log, framed for an error message ("" when unreadable)."""
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


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on ``host:port`` now."""
    with socket.socket() as s, contextlib.suppress(OSError):
        # As servers do, so connections of a previous run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    return False


def wait_until(ready: Callable[[], bool], what: str, timeout: float,
               proc: Proc | None = None, log_path: Path | None = None) -> None:
    """Return once ``ready()``; raise LocalServiceError after ``timeout`` seconds, or as soon
    as ``proc`` (if given) exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise LocalServiceError(f"{what}: process exited with code {proc.returncode}"
                                    f"{log_tail(log_path)}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise LocalServiceError(f"{what}: not ready within {timeout:g}s{log_tail(log_path)}")
        time.sleep(0.05)


def port_answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def http_answers(url: str) -> bool:
    """True when anything answers HTTP at ``url`` (any status)."""
    try:
        urllib.request.urlopen(url, timeout=2.0).close()
    except urllib.error.HTTPError as e:
        e.close()  # any status (e.g. 403 without credentials) means the server is up
    except OSError:
        return False
    return True


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as e:
        e.close()
    except OSError:
        pass
    return False


def wait_for_port(host: str, port: int, timeout: float, *, proc: Proc | None = None,
                  log_path: Path | None = None) -> None:
    """Return once ``host:port`` accepts TCP connections; raise after ``timeout`` seconds,
    or as soon as ``proc`` (if given) exits."""
    wait_until(lambda: port_answers(host, port), f"{host}:{port}", timeout, proc, log_path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie nobody reaps holds nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc; none where there is no /proc)."""
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if stat_file.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                children.append(int(stat_file.parent.name))
    return children


def find_program(name: str, package: str, *, extra_dirs: tuple[str, ...] = ("/usr/sbin",
                                                                          "/sbin")) -> str:
    """Path of program ``name``: PATH first, then ``extra_dirs`` (sbin is not on every user's
    PATH). Missing, it raises LocalServiceError naming the OS package and the setup script."""
    if found := shutil.which(name):
        return found
    for d in extra_dirs:
        if os.access(Path(d) / name, os.X_OK):
            return str(Path(d) / name)
    raise LocalServiceError(
        f"{name} is not installed; `scripts/os-packages.sh` installs it (or, as root: "
        f"`apt-get install {package}`)")


def unprivileged() -> dict[str, Any]:
    """``subprocess.Popen`` arguments that run a child as :data:`SERVICE_USER` when we are
    root (nothing otherwise): PostgreSQL and PgBouncer refuse root, nginx needs no more."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise LocalServiceError(
            f"as root, local services run as the {SERVICE_USER!r} user, and there is none; "
            "install the PostgreSQL server package (e.g. `apt-get install postgresql`) "
            "or run as a normal user") from None
    groups = os.getgrouplist(SERVICE_USER, pw.pw_gid)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": groups}


def grant_traverse(path: Path, uid: int, gids: set[int]) -> None:
    """Let ``uid`` reach ``path``: adds only the search bit of the permission class that
    applies to it on each ancestor that lacks it."""
    for d in path.parents:
        st = d.stat()
        bit = (stat.S_IXUSR if st.st_uid == uid else
               stat.S_IXGRP if st.st_gid in gids else stat.S_IXOTH)
        if not st.st_mode & bit:
            os.chmod(d, stat.S_IMODE(st.st_mode) | bit)


def own_dir(path: Path, run_as: dict[str, Any], mode: int = 0o700) -> None:
    """Create ``path`` for a child started with ``run_as`` (from :func:`unprivileged`): owned
    by that user, reachable through its ancestors."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if "user" in run_as:
        grant_traverse(path, run_as["user"], set(run_as["extra_groups"]))
        if path.stat().st_uid != run_as["user"]:
            os.chown(path, run_as["user"], run_as["group"])
    os.chmod(path, mode)


def spawn(cmd: list[str], log_path: Path, *, env: dict[str, str] | None = None,
          run_as: dict[str, Any] | None = None, cwd: str | Path = "/") -> Proc:
    """Start ``cmd`` in a session of its own, stdin closed, stdout and stderr appended to
    ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True, **(run_as or {}))


def stop_process(proc: Proc, timeout: float, sig: int = 15) -> None:
    """Send ``sig`` (SIGTERM) to ``proc``'s process group, SIGKILL after ``timeout`` seconds;
    returns once it is reaped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()
