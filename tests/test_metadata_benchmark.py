"""``python -m benchmarks.metadata`` at a tiny scale: it runs from its one command, measures
every operation and prints every target with met or not met (the figures themselves are the
benchmark's business, not the suite's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

OPERATIONS = (
    "download lookup", "HEAD", "upload commit", "project list, first page",
    "project list, offset page", "project list, keyset page at the end", "group list",
    "package files, first page", "package files, keyset page at the end", "duplicate check",
    "delete package", "sweeper scan", "deletion worker claim", "upload PUT",
)


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("metadata-bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.metadata", "--scale", "0.0005", "--requests", "3",
         "--shared-buffers", "128MB", "--workdir", str(work / "run"),
         "--markdown", str(work / "report.md")],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "report.md").read_text().strip() == done.stdout.strip()
    return done.stdout


def rows(text: str) -> list[list[str]]:
    """The operations table (the first one): its rows without the heading."""
    table = text.split("| operation |", 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in table.splitlines()[2:] if line.startswith("| ")]


def test_every_operation_is_measured(output: str) -> None:
    names = [row[0] for row in rows(output)]
    for op in OPERATIONS:
        assert any(name.startswith(op) for name in names), op


def test_every_target_says_met_or_not(output: str) -> None:
    for row in rows(output):
        target, met = row[-2], row[-1]
        assert met in ("yes", "**not met**") if target != "—" else met == "—", row


def test_no_request_failed(output: str) -> None:
    assert rows(output)
    assert all(int(row[1]) > 0 and row[2] == "0" for row in rows(output))


def test_plans_of_the_background_scans_are_printed(output: str) -> None:
    assert "-- sweeper scan" in output and "-- deletion worker claim" in output
    assert "Buffers:" in output


def test_every_new_index_is_compared_with_its_absence(output: str) -> None:
    for index in ("packages_project_created_idx", "packages_project_id_idx",
                  "package_files_package_id_idx", "pending_uploads_heartbeat_idx",
                  "object_deletions_due_id_idx"):
        assert f"| `{index}` |" in output, index
