"""What a run does. Two profiles: ``short`` (the 80-second run of the test suite: bodies up to a
few MiB; long enough for seed 2026's fault plan to reach every kind) and ``full`` (the
10-minute default: bodies up to 1 GiB, longer faults)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.config import GiB, MiB

KiB = 1024

# Fault kinds, as the report names them.
KILL = "sigkill_gateway"
TERM = "sigterm_gateway"
PG_RESTART = "restart_postgres"
PGB_RESTART = "restart_pgbouncer"
PGB_PAUSE = "pause_pgbouncer"
S3_PAUSE = "sigstop_s3"
S3_500 = "s3_answers_500"
FAULT_KINDS = (KILL, TERM, PG_RESTART, PGB_RESTART, PGB_PAUSE, S3_PAUSE, S3_500)
# Faults during which a commit's answer may be lost although the commit happened (the README's
# "PostgreSQL connection lost during COMMIT itself"), so a 503 upload may yet be visible.
DATABASE_FAULTS = (PG_RESTART, PGB_RESTART, PGB_PAUSE)


@dataclass(frozen=True)
class Profile:
    name: str
    duration: float
    clients: int
    # Upload sizes: (weight, low, high) bytes, drawn log-uniformly inside a band.
    sizes: tuple[tuple[float, int, int], ...]
    # Each fault held for a time drawn from (low, high) seconds; gaps between faults likewise.
    hold: tuple[float, float]
    gap: tuple[float, float]
    # Kinds held for other times than ``hold``: (kind, low, high).
    holds: tuple[tuple[str, float, float], ...] = ()
    # Weights of the operation kinds.
    ops: tuple[tuple[str, float], ...] = (
        ("upload", 0.40), ("download", 0.22), ("range", 0.08), ("head", 0.04),
        ("list", 0.10), ("delete_file", 0.10), ("delete_version", 0.06),
    )
    # Share of operations the client cuts at a random point.
    cut_ratio: float = 0.08
    # No fault starts in the first and the last seconds of the run.
    warmup: float = 5.0
    cooldown: float = 8.0

    def hold_for(self, kind: str) -> tuple[float, float]:
        return next(((lo, hi) for k, lo, hi in self.holds if k == kind), self.hold)


SHORT = Profile(
    name="short", duration=80.0, clients=6,
    sizes=((0.35, 0, 4 * KiB), (0.40, 4 * KiB, 1 * MiB), (0.25, 1 * MiB, 12 * MiB)),
    hold=(1.5, 5.0), gap=(3.0, 7.0),
)
FULL = Profile(
    name="full", duration=600.0, clients=8,
    sizes=((0.30, 0, 4 * KiB), (0.40, 4 * KiB, 1 * MiB), (0.24, 1 * MiB, 32 * MiB),
           (0.05, 32 * MiB, 256 * MiB), (0.01, 256 * MiB, 1 * GiB)),
    hold=(2.0, 12.0), gap=(5.0, 15.0),
    # Some freezes of S3 outlast GATEWAY_S3_REQUEST_DEADLINE (30 s): the 503 path, then the
    # sweeper's clean-up once S3 thaws.
    holds=((S3_PAUSE, 5.0, 45.0),),
)
PROFILES = {p.name: p for p in (SHORT, FULL)}


def profile(name: str, duration: float | None = None) -> Profile:
    chosen = PROFILES[name]
    return chosen if duration is None else replace(chosen, duration=duration)
