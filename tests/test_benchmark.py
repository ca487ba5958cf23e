"""The benchmark runs to its end as documented: one run at tiny sizes with every case on
(timing nothing: only that each case finishes and lands in the table), and its options checked
before anything starts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import parse_args

ROOT = Path(__file__).resolve().parent.parent


PEER = shutil.which("docker-registry") is not None


def _bench(tmp_path: Path, *options: str) -> str:
    md = tmp_path / "bench.md"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--size", "1MiB", "--markdown", str(md),
         "--workdir", str(tmp_path / "w"), *options],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return md.read_text()


def test_every_case_runs_to_the_end_at_tiny_sizes(tmp_path: Path) -> None:
    # rclone only: the redirect case (moto presigning) and the small files into moto must
    # start the S3 server they need themselves.
    text = _bench(tmp_path, "--servers", "rclone", "--concurrency", "2", "--sweep-size",
                  "256KiB", "--sweep-on", "null,rclone", "--download-seconds", "0.3",
                  "--download-clients", "2", "--download-rate", "20", "--metrics-rounds", "2",
                  "--small-seconds", "0.3", "--small-rounds", "1", "--small-clients", "2",
                  "--small-on", "moto")
    for heading in ("### Uploads: gateway against direct", "### The gateway's own ceiling",
                    "### Metrics on and off", "### Concurrent uploads",
                    "### Small files: 4 KiB uploads, 2 clients",
                    "### Redirect downloads: one gateway process, moto presigning"):
        assert heading in text
    assert ("| moto | OCI registry blob push |" in text) is PEER


@pytest.mark.skipif(not PEER, reason="docker-registry is not installed "
                                     "(scripts/os-packages.sh bench)")
def test_the_peer_pushes_the_big_file_into_moto(tmp_path: Path) -> None:
    text = _bench(tmp_path, "--servers", "moto", "--no-ceiling", "--concurrency", "",
                  "--metrics-rounds", "0", "--download-seconds", "0", "--small-seconds", "0")
    assert "### The OCI registry as a peer" in text
    assert "| 1 MiB, MB/s best (curl; direct: boto3) |" in text


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
