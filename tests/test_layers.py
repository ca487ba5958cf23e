"""The layers are a contract: ``lint-imports`` holds the direction of imports (pyproject's
``[tool.importlinter]``), and a handler that imports the database layer breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(cwd / "pyproject.toml"),
                           "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_code_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_handler_importing_the_database_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "gateway", tmp_path / "gateway",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    handler = tmp_path / "gateway" / "api" / "users.py"
    handler.write_text(handler.read_text() + "\nfrom gateway.db.identity import users as _q\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "Handlers parse and present" in result.stdout
    assert "gateway.api.users -> gateway.db.identity.users" in result.stdout
