"""The chaos soak's 80-second profile (``python -m benchmarks.soak --profile short``) through the
whole cluster: nginx, 3 gateways, PgBouncer, PostgreSQL and S3 behind a fault proxy, with every
fault kind injected while clients upload, download, list, delete and hang up. It passes when
every invariant of the checker holds; on failure the message is the report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.soak import report
from benchmarks.soak.profiles import FAULT_KINDS, profile
from benchmarks.soak.run import run

pytestmark = pytest.mark.soak

# A fixed plan of faults for the suite; PACKGATE_SOAK_SEED replays another.
SEED = int(os.environ.get("PACKGATE_SOAK_SEED", "2026"))


@pytest.mark.timeout(900)
def test_short_soak_keeps_every_invariant(tmp_path: Path) -> None:
    outcome = run(profile("short"), SEED, tmp_path / "cluster")
    text = report.write(outcome, tmp_path / "report", f"PACKGATE_SOAK_SEED={SEED}",
                        "the test suite")
    assert {f.kind for f in outcome.history.faults} == set(FAULT_KINDS), text
    assert [r.name for r in outcome.results if not r.passed] == [], text
