"""nginx in front of gateways, with the config shipped in ``deploy/nginx.conf`` included as it
is: this module writes only the main config around it (pid, logs, temp folders in a folder of
its own) and the two site files the shipped config includes (the gateways, and where to listen).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.devtools.processes import (
    SERVICE_USER,
    ChildService,
    LocalServiceError,
    Proc,
    child_pids,
    find_program,
    log_tail,
    own_dir,
    port_is_free,
    spawn,
    stop_process,
    unprivileged,
    wait_for_port,
    wait_until,
)

# The file operators install; the cluster includes this very file.
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
UPSTREAM_FILE = "packgate-upstream.conf"
LISTEN_FILE = "packgate-listen.conf"

# nginx's access log for the cluster: which gateway answered ($upstream_addr lists each one
# tried, so a retry shows as "A, B"), and how.
LOG_FORMAT = ('$time_iso8601 $request_id "$request" $status $body_bytes_sent '
              'upstream=$upstream_addr upstream_status=$upstream_status '
              'request_time=$request_time')


def find_nginx() -> str:
    return find_program("nginx", "nginx")


def shipped_config() -> Path:
    if not SHIPPED_CONFIG.is_file():
        raise LocalServiceError(
            f"{SHIPPED_CONFIG} is missing: the local cluster runs from a clone of packgate's "
            "repository, whose deploy/nginx.conf it uses")
    return SHIPPED_CONFIG


@dataclass(frozen=True, slots=True)
class Upstream:
    """One gateway behind nginx; ``down`` keeps it out of rotation."""

    host: str
    port: int
    down: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def upstream_lines(upstreams: list[Upstream], *, max_fails: int = 1,
                   fail_timeout: int = 5) -> str:
    lines = [f"server {u.address} max_fails={max_fails} fail_timeout={fail_timeout}s"
             f"{' down' if u.down else ''};" for u in upstreams]
    return "# Written by packgate's local cluster.\n" + "\n".join(lines) + "\n"


class Nginx(ChildService):
    """nginx on ``127.0.0.1:port`` balancing over ``upstreams``, everything it writes in
    ``work_dir`` (logs in ``work_dir/logs``). As root its workers run as the ``postgres``
    user rather than nginx's default ``nobody``."""

    def __init__(self, work_dir: Path, port: int, upstreams: list[Upstream], *,
                 timeout: float = 30.0) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.port = port
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.log_path = self.work_dir / "logs" / "nginx.log"
        self.access_log = self.work_dir / "logs" / "access.log"
        self.error_log = self.work_dir / "logs" / "error.log"
        self._proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.work_dir / "nginx.conf"

    def _main_config(self) -> str:
        w = self.work_dir
        user = f"user {SERVICE_USER};\n" if os.geteuid() == 0 else ""
        temp = "\n".join(f"    {kind}_temp_path {w}/temp/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""\
# Written by packgate's local cluster around the shipped deploy/nginx.conf.
daemon off;
{user}worker_processes 1;
pid {w}/nginx.pid;
error_log {self.error_log} notice;

events {{
    worker_connections 1024;
}}

http {{
    log_format packgate '{LOG_FORMAT}';
    access_log {self.access_log} packgate;
{temp}
    include {shipped_config()};
}}
"""

    def write_config(self) -> None:
        """The main config and the two site files in ``work_dir``."""
        run_as = unprivileged()
        own_dir(self.work_dir, run_as, mode=0o755)
        for sub in ("logs", "temp"):
            (self.work_dir / sub).mkdir(exist_ok=True)
        self.config_path.write_text(self._main_config())
        (self.work_dir / LISTEN_FILE).write_text(
            f"# Written by packgate's local cluster.\nlisten 127.0.0.1:{self.port};\n"
            "server_name localhost;\n")
        self.write_upstreams(self.upstreams)

    def write_upstreams(self, upstreams: list[Upstream]) -> None:
        self.upstreams = list(upstreams)
        tmp = self.work_dir / (UPSTREAM_FILE + ".tmp")
        tmp.write_text(upstream_lines(self.upstreams))
        tmp.replace(self.work_dir / UPSTREAM_FILE)  # a reload never reads half a file

    def _command(self, *extra: str) -> list[str]:
        return [find_nginx(), "-p", f"{self.work_dir}/", "-c", str(self.config_path),
                "-e", str(self.error_log), *extra]

    def test_config(self) -> str:
        """``nginx -t`` on the config as written; raises LocalServiceError with its output
        unless it passes, returns the output when it does."""
        self.write_config()
        out = subprocess.run(self._command("-t"), capture_output=True, text=True,
                             timeout=self.timeout, stdin=subprocess.DEVNULL)
        text = out.stdout + out.stderr
        if out.returncode != 0:
            raise LocalServiceError(f"nginx -t failed:\n{text}")
        return text

    def start(self) -> None:
        """Guarantee nginx accepts connections at :attr:`url`."""
        if self.is_running():
            return
        if not port_is_free(self.port):
            raise LocalServiceError(f"port {self.port} on 127.0.0.1 is already in use")
        self.write_config()
        self._proc = spawn(self._command(), self.log_path)
        try:
            wait_for_port("127.0.0.1", self.port, self.timeout, proc=self._proc,
                          log_path=self.error_log)
        except BaseException:
            self.stop()
            raise

    def _workers(self) -> dict[int, str]:
        workers = {}
        if self._proc is not None:
            for pid in child_pids(self._proc.pid):
                with contextlib.suppress(OSError):
                    workers[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                        errors="replace")
        return workers

    def reload(self, upstreams: list[Upstream]) -> None:
        """Rewrite the gateways and reload (SIGHUP): requests in flight finish on the old
        workers. Returns once new connections are taken only by workers with the new list."""
        if self._proc is None or self._proc.poll() is not None:
            raise LocalServiceError(f"nginx is not running{log_tail(self.error_log)}")
        old = set(self._workers())
        self.write_upstreams(upstreams)
        os.kill(self._proc.pid, signal.SIGHUP)

        def reloaded() -> bool:
            workers = self._workers()
            new = set(workers) - old
            # Old workers close their listening sockets when told to quit; their title says so.
            leaving = all("shutting down" in workers[p] for p in old & set(workers))
            return bool(new) and leaving

        wait_until(reloaded, "nginx reload", self.timeout, self._proc, self.error_log)

    def stop(self) -> None:
        """Graceful stop (SIGQUIT: finish the requests in flight), SIGTERM then SIGKILL when
        that takes longer than ``timeout``; a no-op when stopped."""
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._proc.pid, signal.SIGQUIT)
                deadline = time.monotonic() + self.timeout
                while self._proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
            stop_process(self._proc, 5.0)
            self._proc = None
