"""``python -m benchmarks.soak [--profile full|short] [--duration S] [--seed N] [--report DIR]``

Exits 0 when every invariant holds, 1 otherwise; the report (report.md, history.jsonl,
faults.json, throughput.png) goes to ``--report``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.soak import report
from benchmarks.soak.profiles import PROFILES, profile
from benchmarks.soak.run import log, run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="full",
                   help="full: bodies up to 1 GiB (default); short: up to 12 MiB")
    p.add_argument("--duration", type=float,
                   help="seconds of load (default: 600 for full, 80 for short)")
    p.add_argument("--seed", type=int, help="replays a run (default: a new one, printed)")
    p.add_argument("--report", type=Path, default=Path("soak-report"),
                   help="folder for the report (default ./soak-report)")
    p.add_argument("--port", type=int, help="nginx's port (default: a free one)")
    p.add_argument("--workdir", type=Path,
                   help="the cluster's folder (default: a temporary one, removed at the end)")
    return p.parse_args(argv)


def machine_note() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, load average at the end {load}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = profile(args.profile, args.duration)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    command = (f"python -m benchmarks.soak --profile {chosen.name} --duration "
               f"{chosen.duration:g} --seed {seed}")
    log(f"seed {seed}: replay with `{command}`")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="packgate-soak-"))
    try:
        outcome = run(chosen, seed, work, port=args.port)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = report.write(outcome, args.report, command, machine_note())
    if report.plot(outcome, args.report / "throughput.png"):
        log(f"plot: {args.report / 'throughput.png'}")
    else:
        log("no plot: matplotlib is missing (pip install -e '.[bench]')")
    print(text, flush=True)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
