"""PgBouncer in transaction pooling mode in front of a local PostgreSQL, as teams at scale run
it: every transaction of a client may run on another server connection."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from gateway.devtools.processes import (
    ChildService,
    LocalServiceError,
    Proc,
    find_program,
    free_port,
    own_dir,
    port_is_free,
    spawn,
    stop_process,
    unprivileged,
    wait_for_port,
)


def find_pgbouncer() -> str:
    return find_program("pgbouncer", "pgbouncer")


class PgBouncer(ChildService):
    """PgBouncer on 127.0.0.1 forwarding every database to PostgreSQL at ``server_port``
    (trust auth, as the local PostgreSQL has). Its config and log live in ``work_dir``. As root
    it runs as the ``postgres`` user: PgBouncer refuses to run as root."""

    def __init__(self, work_dir: Path, server_port: int, *, port: int | None = None,
                 pool_size: int = 20, timeout: float = 30.0) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.server_port = server_port
        self.port = port
        self.pool_size = pool_size
        self.timeout = timeout
        self.log_path = self.work_dir / "pgbouncer.log"
        self._proc: Proc | None = None

    @property
    def config_path(self) -> Path:
        return self.work_dir / "pgbouncer.ini"

    def database_url(self, name: str) -> str:
        if self.port is None:
            raise LocalServiceError("the port is chosen by start(); no URL before it")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    @property
    def admin_url(self) -> str:
        """PgBouncer's own console (SHOW POOLS, SHOW CONFIG ...)."""
        return self.database_url("pgbouncer")

    def _config(self) -> str:
        users = self.work_dir / "userlist.txt"
        return f"""\
; Written by packgate's local cluster; rewritten at every start.
[databases]
* = host=127.0.0.1 port={self.server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
admin_users = postgres
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = 1000
; After a failed server login PgBouncer refuses every client for this long (default 15 s):
; PostgreSQL back from a restart must mean the gateways are back within a second.
server_login_retry = 1
; asyncpg sends no other start-up parameters when told it is behind PgBouncer.
ignore_startup_parameters = extra_float_digits
"""

    def start(self) -> None:
        """Guarantee PgBouncer accepts connections at :meth:`database_url`."""
        if self.is_running():
            return
        binary = find_pgbouncer()
        if self.port is None:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise LocalServiceError(f"port {self.port} on 127.0.0.1 is already in use")
        run_as = unprivileged()
        own_dir(self.work_dir, run_as)
        (self.work_dir / "userlist.txt").write_text('"postgres" ""\n')
        self.config_path.write_text(self._config())
        for path in (self.config_path, self.work_dir / "userlist.txt"):
            os.chmod(path, 0o644)
        self._proc = spawn([binary, str(self.config_path)], self.log_path, run_as=run_as)
        try:
            wait_for_port("127.0.0.1", self.port, self.timeout, proc=self._proc,
                          log_path=self.log_path)
        except BaseException:
            self.stop()
            raise

    def pause(self) -> None:
        """Freeze PgBouncer (SIGSTOP): clients' queries hang, nothing is closed."""
        if self._proc is None or self._proc.poll() is not None:
            raise LocalServiceError("PgBouncer is not running")
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop PgBouncer (SIGTERM: it closes every connection now); a no-op when stopped."""
        if self._proc is not None:
            self.resume()  # a frozen process acts on SIGTERM only once continued
            stop_process(self._proc, self.timeout)
            self._proc = None
