"""The data folder of ``gateway dev`` or ``gateway cluster``: held by one of them at a time,
and the secrets they keep there (the S3 key pair, the administrator's dev token), readable only
by the owner."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from pathlib import Path

from gateway.devtools.processes import LocalServiceError


class DataDir:
    """``path`` and what lives in it. :meth:`acquire` takes the folder for this process (an
    advisory ``flock`` on ``path/lock``, released by the kernel when the process ends, however
    it ends), so a second start on the same folder is refused before it touches anything."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self._lock_fd: int | None = None

    def acquire(self, command: str) -> None:
        """Hold the folder for ``command`` (e.g. ``gateway dev``) until :meth:`release`;
        raises LocalServiceError naming the process that holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LocalServiceError(
                f"{self.path} is in use by {holder}; stop that one first (Ctrl-C where it "
                "runs), or give this one another folder with --data-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{command} (pid {os.getpid()})\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _write_private(self, name: str, text: str) -> None:
        # Created 0600 before anything is written, so the secret is never readable by others.
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(self.path / name, 0o600)

    def s3_credentials(self) -> tuple[str, str]:
        """The local S3 server's key pair, made once per data folder."""
        path = self.path / "s3-credentials.json"
        if path.exists():
            creds = json.loads(path.read_text())
            return creds["access_key"], creds["secret_key"]
        access, secret = "packgate" + secrets.token_hex(4), secrets.token_urlsafe(24)
        self._write_private(path.name, json.dumps({"access_key": access, "secret_key": secret}))
        return access, secret

    @property
    def token_path(self) -> Path:
        return self.path / "admin-token"

    def saved_token(self) -> str | None:
        """The administrator's dev token saved by an earlier start, if any."""
        try:
            return self.token_path.read_text().strip() or None
        except OSError:
            return None

    def save_token(self, token: str) -> None:
        self._write_private(self.token_path.name, token + "\n")
