"""The fault scheduler: a plan drawn from the seed before the run (what, on which part, when,
for how long), carried out on a thread of its own, one fault at a time, each undone before the
next. The plan is the same for the same seed and profile; the times each fault really started
and ended go into the history."""

from __future__ import annotations

import random
import threading
import time

from benchmarks.soak.history import Fault, History
from benchmarks.soak.profiles import (
    FAULT_KINDS,
    KILL,
    PG_RESTART,
    PGB_PAUSE,
    PGB_RESTART,
    S3_500,
    S3_PAUSE,
    TERM,
    Profile,
)
from gateway.devtools.cluster import Cluster


def plan(profile: Profile, seed: int, instances: list[str]) -> list[Fault]:
    """Every kind once, in a seeded order, before any repeats: even a short run sees each."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = profile.warmup
    order: list[str] = []
    while True:
        if not order:
            order = list(FAULT_KINDS)
            rng.shuffle(order)
        kind = order.pop()
        hold = round(rng.uniform(*profile.hold_for(kind)), 2)
        if t + hold > profile.duration - profile.cooldown:
            return faults
        target = rng.choice(instances) if kind in (KILL, TERM) else ""
        faults.append(Fault(kind, target, round(t, 2), hold))
        t += hold + rng.uniform(*profile.gap)


class Scheduler:
    def __init__(self, cluster: Cluster, history: History, faults: list[Fault]) -> None:
        self._cluster = cluster
        self._history = history
        self._faults = faults
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the fault in progress has been undone."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(180)

    def _run(self) -> None:
        for fault in self._faults:
            delay = fault.planned - self._history.now()
            if self._stop.wait(max(0.0, delay)):
                return
            fault.start = self._history.now()
            self._history.add_fault(fault)
            try:
                self._apply(fault)
            except Exception as exc:  # recorded; the checker fails a run whose fault failed
                fault.error = f"{type(exc).__name__}: {exc}"
            fault.end = self._history.now()

    def _hold(self, fault: Fault) -> None:
        time.sleep(max(0.0, fault.hold))

    def _apply(self, fault: Fault) -> None:
        c = self._cluster
        if fault.kind == KILL:
            c.kill(fault.target)
            self._hold(fault)
            c.restart(fault.target)
        elif fault.kind == TERM:
            c.terminate(fault.target)
            self._hold(fault)
            c.restart(fault.target)
        elif fault.kind == PG_RESTART:
            c.restart_postgres(down=fault.hold)
        elif fault.kind == PGB_RESTART:
            c.restart_pgbouncer(down=fault.hold)
        elif fault.kind == PGB_PAUSE:
            c.pause_pgbouncer()
            try:
                self._hold(fault)
            finally:
                c.resume_pgbouncer()
        elif fault.kind == S3_PAUSE:
            c.pause_s3()
            try:
                self._hold(fault)
            finally:
                c.resume_s3()
        elif fault.kind == S3_500:
            c.s3_failing(True)
            try:
                self._hold(fault)
            finally:
                c.s3_failing(False)
        else:
            raise ValueError(fault.kind)
