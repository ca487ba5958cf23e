"""The benchmark runs to its end as documented: one run at tiny sizes with every case on
(timing nothing: only that each case finishes and lands in the table), and its options checked
before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import parse_args

ROOT = Path(__file__).resolve().parent.parent


def test_every_case_runs_to_the_end_at_tiny_sizes(tmp_path: Path) -> None:
    # rclone only: the redirect case must start the S3 server it presigns with itself.
    md = tmp_path / "bench.md"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--servers", "rclone", "--size", "1MiB",
         "--concurrency", "2", "--sweep-size", "256KiB", "--sweep-on", "null,rclone",
         "--download-seconds", "0.3", "--download-clients", "2", "--download-rate", "20",
         "--metrics-rounds", "2", "--markdown", str(md), "--workdir", str(tmp_path / "w")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = md.read_text()
    for heading in ("### Uploads: gateway against direct", "### The gateway's own ceiling",
                    "### Metrics on and off", "### Concurrent uploads",
                    "### Redirect downloads: one gateway process, moto presigning"):
        assert heading in text


@pytest.mark.parametrize("option, value", [
    ("--servers", "mnoto"), ("--sweep-on", "s3"), ("--concurrency", "1,x"),
    ("--concurrency", "0"), ("--download-server", "null"),
])
def test_a_misspelt_option_is_refused_before_anything_starts(
        option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args([option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_empty_lists_skip_their_cases() -> None:
    args = parse_args(["--servers", "", "--concurrency", "", "--sweep-on", ""])
    assert (args.server_list, args.sweep_list, args.sweep_targets) == ([], [], [])
