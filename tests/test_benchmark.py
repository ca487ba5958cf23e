"""The benchmark runs to its end as documented: one run at tiny sizes with every case on
(timing nothing: only that each case finishes and lands in the table), and its options checked
before anything starts."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.__main__ import parse_args
from benchmarks.counting import _HttpCounter, _PgCounter

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
    # rclone rests between cases: the redirect case it presigns must start it again itself.
    text = _bench(tmp_path, "--servers", "rclone,moto", "--concurrency", "2", "--sweep-size",
                  "256KiB", "--sweep-on", "null", "--download-server", "rclone",
                  "--download-seconds", "0.3", "--download-clients", "2", "--download-rate",
                  "20", "--metrics-rounds", "2", "--small-seconds", "0.3", "--small-rounds", "1",
                  "--small-clients", "2", "--small-on", "moto", "--count-uploads", "2")
    for heading in ("### Uploads: gateway against direct", "### The gateway's own ceiling",
                    "### Metrics on and off", "### Concurrent uploads",
                    "### Small files: 4 KiB uploads, 2 clients",
                    "### Redirect downloads: one gateway process, rclone presigning"):
        assert heading in text
    assert "PostgreSQL round trips** (each Sync or simple Query) and S3 requests: PutObject 1.00" \
        in text
    if PEER:
        assert "| moto | OCI registry blob push |" in text
        assert "| 1 MiB, MB/s best (curl; direct: boto3) |" in text
    else:
        assert "(`docker-registry`) was not installed" in text


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


def test_the_postgres_counter_counts_each_wait_for_an_answer() -> None:
    counts: Counter[str] = Counter()
    counter = _PgCounter(counts)
    ssl = struct.pack("!ii", 8, 80877103)
    startup = struct.pack("!ii", 9, 196608) + b"\0"

    def msg(kind: bytes, body: bytes = b"") -> bytes:
        return kind + struct.pack("!i", 4 + len(body)) + body

    stream = (ssl + startup + msg(b"Q", b"BEGIN\0") + msg(b"P", b"\0SELECT 1\0\0\0")
              + msg(b"B", b"x" * 10) + msg(b"E", b"\0\0\0\0\0") + msg(b"S"))
    for i in range(len(stream)):  # however the bytes are split
        counter.feed(stream[i : i + 1])
    assert counts["round trips"] == 2


def test_the_s3_counter_names_each_request_and_skips_bodies() -> None:
    counts: Counter[str] = Counter()
    counter = _HttpCounter(counts)
    body = b"PUT /b/k HTTP/1.1\r\n" * 3
    counter.feed(b"PUT /bench/key HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body + b"POST /bench/key?uploads HTTP/1.1\r\n\r\n"
                 + b"PUT /bench/key?partNumber=1&uploadId=x HTTP/1.1\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                 + b"DELETE /bench/key?uploadId=x HTTP/1.1\r\n\r\n")
    assert counts == Counter({"PutObject": 1, "CreateMultipartUpload": 1, "UploadPart": 1,
                              "AbortMultipartUpload": 1})


def test_empty_lists_skip_their_cases() -> None:
    args = parse_args(["--servers", "", "--concurrency", "", "--sweep-on", ""])
    assert (args.server_list, args.sweep_list, args.sweep_targets) == ([], [], [])
