"""``gateway serve`` as child processes, each on a port of its own, configured as an operator
would: by ``GATEWAY_*`` variables."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from gateway import config
from gateway.devtools.processes import (
    ChildService,
    LocalServiceError,
    Proc,
    free_port,
    http_ok,
    spawn,
    stop_process,
    wait_until,
)

# The repository root, so `python -m gateway` finds this very package.
_ROOT = Path(__file__).resolve().parents[2]


def child_environment(settings: config.Settings, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without any ``GATEWAY_*`` variable, plus the variables that give a child
    ``settings`` (S3 credentials, when the settings carry them, as AWS_* variables)."""
    env = {k: v for k, v in base.items() if not k.startswith("GATEWAY_")}
    env.update(config.to_env(settings))
    if settings.s3_access_key_id:
        env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key or ""
    return env


class GatewayInstance(ChildService):
    """One ``gateway serve`` process named ``name`` on 127.0.0.1:``port``, logging to
    ``log_path``; ready once ``/-/readiness`` answers."""

    def __init__(self, name: str, settings: config.Settings, base_env: Mapping[str, str],
                 log_path: Path, *, port: int | None = None, timeout: float = 60.0,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.settings = settings.with_overrides(
            port=self.port, host="127.0.0.1", instance_id=name,
            # A stall-proof health listener, if asked for, needs a port of each one's own.
            health_port=free_port() if settings.health_port is not None else None,
        )
        self.env = child_environment(self.settings, base_env)
        self.env["GATEWAY_INSTANCE_ID"] = name
        self.env.update(extra_env or {})
        self.log_path = log_path
        self.timeout = timeout
        self._proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start the process without waiting for it (several start in parallel)."""
        if self.is_running():
            return
        self._proc = spawn([sys.executable, "-m", "gateway", "serve"], self.log_path,
                           env=self.env, cwd=_ROOT)

    def ready(self, timeout: float = 1.0) -> bool:
        """True when ``/-/readiness`` answers 200 (PostgreSQL, through PgBouncer, answers)."""
        return http_ok(self.url + "/-/readiness", timeout)

    def wait_ready(self) -> None:
        wait_until(self.ready, f"gateway {self.name}", self.timeout, self._proc, self.log_path)

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL (a crash): no clean-up of any kind runs."""
        if self._proc is None:
            raise LocalServiceError(f"gateway {self.name} was never started")
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
        self._proc.wait()

    def stop(self) -> None:
        """SIGTERM: in-flight requests get ``GATEWAY_SHUTDOWN_TIMEOUT`` to finish."""
        if self._proc is not None:
            stop_process(self._proc, self.settings.shutdown_timeout + 20)
            self._proc = None
