"""The invariants, checked once the cluster has settled: the history against the database, the
bucket and what the gateways answer.

Timing makes some operations ambiguous, and the checker says exactly when it allows them: an
upload whose outcome is unknown (no answer, nginx's 502/504) may or may not be visible; a 503
upload may be visible only if a database fault overlapped it (the README's "connection lost
during COMMIT itself"); a delete removes what was committed before it began and may remove what
was committed while it ran.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.soak.bodies import BodyMaker
from benchmarks.soak.history import FAILED, OK, UNKNOWN, Fault, History, Op
from benchmarks.soak.profiles import DATABASE_FAULTS, KILL, TERM

INF = math.inf
_SHOWN = 10  # problems listed per invariant


@dataclass
class Result:
    name: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def fail(self, problem: str) -> None:
        self.problems.append(problem)


@dataclass
class State:
    """The cluster after it settled."""

    rows: list[dict[str, Any]]  # package_files joined to packages
    pending: list[dict[str, Any]]
    deletions: list[dict[str, Any]]
    keys: set[str]
    open_uploads: list[dict[str, Any]]
    object_sha256: dict[str, str]  # object key -> sha256 of its bytes in the bucket
    gateway_status: dict[tuple[str, str, str, str], int]  # deleted targets, GET answers
    settled_after: float


Target = tuple[str, str, str, str]


def target(op: Op) -> Target:
    return op.project, op.name, op.version, op.file


class Checker:
    def __init__(self, history: History, bodies: BodyMaker, projects: dict[str, int],
                 rss_bound: int) -> None:
        self.h = history
        self.bodies = bodies
        self.project_of = {pid: name for name, pid in projects.items()}
        self.rss_bound = rss_bound
        self.uploads = [o for o in history.ops if o.kind == "upload"]
        self.deletes = [o for o in history.ops if o.kind.startswith("delete")]
        self.by_target: dict[Target, list[Op]] = defaultdict(list)
        for op in self.uploads:
            self.by_target[target(op)].append(op)

    # --- what the history allows ---------------------------------------------------------

    def _db_fault_during(self, op: Op) -> bool:
        return any(f.kind in DATABASE_FAULTS and f.start <= op.end and f.end >= op.start
                   for f in self.h.faults)

    def may_be_visible(self, op: Op) -> bool:
        if op.outcome in (OK, UNKNOWN):
            return True
        return op.outcome == FAILED and op.status == 503 and self._db_fault_during(op)

    def _covers(self, delete: Op, t: Target) -> bool:
        return (delete.project, delete.name, delete.version) == t[:3] and (
            delete.kind == "delete_version" or delete.file == t[3])

    def _gateway_died_during(self, op: Op) -> bool:
        return any(f.kind in (KILL, TERM) and f.start <= op.end and f.end >= op.start
                   for f in self.h.faults)

    def _may_have_taken_effect(self, d: Op) -> bool:
        if d.outcome in (OK, UNKNOWN) or d.status == 503:
            return True
        # DELETE is idempotent, so nginx sends it to the next gateway when the first dies
        # before answering; the retry finds nothing and answers 404, although the first
        # attempt may have deleted the file.
        return d.status == 404 and self._gateway_died_during(d)

    def _may_have_deleted(self, t: Target, committed_from: float) -> bool:
        """A delete that may have taken effect after a commit made at ``committed_from``."""
        for d in self.deletes:
            if self._covers(d, t) and self._may_have_taken_effect(d):
                until = INF if d.outcome == UNKNOWN else d.end
                if until > committed_from:
                    return True
        return False

    def _surely_deleted(self, t: Target, committed_by: float) -> bool:
        return any(self._covers(d, t) and d.outcome == OK and d.start > committed_by
                   for d in self.deletes)

    # --- the invariants ------------------------------------------------------------------

    def run(self, state: State) -> list[Result]:
        return [
            self.acknowledged_stored(state),
            self.nothing_unacknowledged(state),
            self.no_orphans(state),
            self.no_open_uploads(state),
            self.no_forbidden_duplicates(state),
            self.deleted_not_downloadable(state),
            self.errors_are_json(),
            self.rss_within_bound(),
            self.faults_carried_out(),
        ]

    def _rows_by_target(self, state: State) -> dict[Target, list[dict[str, Any]]]:
        rows: dict[Target, list[dict[str, Any]]] = defaultdict(list)
        for r in state.rows:
            rows[(self.project_of.get(r["project_id"], "?"), r["name"], r["version"],
                  r["file_name"])].append(r)
        return rows

    def acknowledged_stored(self, state: State) -> Result:
        res = Result("every 201/200 upload is stored whole (sha256 sent = sha256 stored)")
        rows = self._rows_by_target(state)
        for op in self.uploads:
            if op.outcome != OK:
                continue
            res.checked += 1
            answered = op.extra.get("answer_sha256")
            if op.select and answered != op.sha256:
                res.fail(f"op {op.id}: select=package_file answered sha256 {answered}, "
                         f"sent {op.sha256}")
            t = target(op)
            if self._may_have_deleted(t, op.start):
                continue  # a delete may have removed it: checked by the delete invariant
            mine = [r for r in rows.get(t, []) if r["file_sha256"] == op.sha256]
            if not mine:
                res.fail(f"op {op.id}: 201 for {'/'.join(t)} ({op.size} bytes) but no such "
                         "file")
                continue
            for r in mine:
                stored = state.object_sha256.get(r["object_key"])
                if stored != op.sha256 or r["size"] != op.size:
                    res.fail(f"op {op.id}: {'/'.join(t)} stored as {stored} "
                             f"({r['size']} bytes), sent {op.sha256} ({op.size} bytes)")
        return res

    def _allowed(self, t: Target, sha256: str) -> bool:
        return any(op.sha256 == sha256 and self.may_be_visible(op)
                   for op in self.by_target.get(t, []))

    def nothing_unacknowledged(self, state: State) -> Result:
        res = Result("nothing visible that was never answered 201/200 (unless unknown)")
        for t, rows in self._rows_by_target(state).items():
            for r in rows:
                res.checked += 1
                if not self._allowed(t, r["file_sha256"]):
                    sent = [(o.id, o.outcome, o.status) for o in self.by_target.get(t, [])
                            if o.sha256 == r["file_sha256"]]
                    res.fail(f"{'/'.join(t)} (row {r['id']}, sha256 {r['file_sha256'][:12]}) "
                             f"is visible; its uploads: {sent or 'none'}")
        for op in self.h.ops:
            if op.kind not in ("download", "range") or op.outcome != OK:
                continue
            res.checked += 1
            t = target(op)
            if not self._allowed(t, op.checksum_header):
                res.fail(f"op {op.id}: downloaded {'/'.join(t)} with sha256 "
                         f"{op.checksum_header[:12]}, which no acknowledged upload sent")
                continue
            self._check_download_bytes(op, res)
        return res

    def _check_download_bytes(self, op: Op, res: Result) -> None:
        t = target(op)
        if op.range is not None and op.received == op.range[1] - op.range[0] + 1:
            # The range S3 sent (rclone answers such a request 200, not 206): those bytes.
            source = next(o for o in self.by_target[t] if o.sha256 == op.checksum_header)
            want = self.bodies.slice(source.id, source.size, op.range[0], op.range[1] + 1)
            if hashlib.sha256(want).hexdigest() != op.received_sha256:
                res.fail(f"op {op.id}: bytes {op.range} of {'/'.join(t)} differ")
        elif op.received_sha256 != op.checksum_header:
            res.fail(f"op {op.id}: {op.mode} download of {'/'.join(t)} gave sha256 "
                     f"{op.received_sha256[:12]} ({op.received} bytes), its header says "
                     f"{op.checksum_header[:12]}")

    def no_orphans(self, state: State) -> Result:
        res = Result("no object without a row, no row without its object (after the windows)")
        rows = {r["object_key"] for r in state.rows}
        res.checked = len(rows | state.keys)
        for key in sorted(state.keys - rows)[:_SHOWN]:
            res.fail(f"object {key} has no row")
        for key in sorted(rows - state.keys)[:_SHOWN]:
            res.fail(f"row of {key} has no object")
        for p in state.pending[:_SHOWN]:
            res.fail(f"pending upload {p['object_key']} of {p['instance']} left")
        for d in state.deletions[:_SHOWN]:
            res.fail(f"object deletion of {d['object_key']} still queued "
                     f"(attempts {d['attempts']}: {d['last_error']})")
        return res

    def no_open_uploads(self, state: State) -> Result:
        res = Result("no open multipart upload after the stale window")
        res.checked = len(state.open_uploads)
        for u in state.open_uploads[:_SHOWN]:
            res.fail(f"multipart upload {u.get('UploadId')} of {u.get('Key')} is open")
        return res

    def no_forbidden_duplicates(self, state: State) -> Result:
        res = Result("no duplicate stored where the policy forbids it")
        counts = Counter(t for t, rows in self._rows_by_target(state).items()
                         for _ in rows if t[0] == "forbid")
        res.checked = len(counts)
        for t, n in counts.items():
            if n > 1:
                res.fail(f"{'/'.join(t)} is stored {n} times")
        return res

    def deleted_targets(self) -> dict[Target, Op]:
        """Targets a 204 delete removed with no upload that may have committed after it."""
        out: dict[Target, Op] = {}
        for d in self.deletes:
            if d.outcome != OK:
                continue
            for t, ups in self.by_target.items():
                if not self._covers(d, t):
                    continue
                later = [u for u in ups if u.outcome in (OK, UNKNOWN, FAILED)
                         and (INF if u.outcome == UNKNOWN else u.end) > d.start]
                if not later:
                    out[t] = d
        return out

    def deleted_not_downloadable(self, state: State) -> Result:
        res = Result("a deleted file is not downloadable")
        rows = self._rows_by_target(state)
        for t, d in self.deleted_targets().items():
            res.checked += 1
            if rows.get(t):
                res.fail(f"{'/'.join(t)} deleted by op {d.id} (204) is still stored")
            status = state.gateway_status.get(t)
            if status is not None and status != 404:
                res.fail(f"{'/'.join(t)} deleted by op {d.id} (204) answers {status}")
        return res

    def errors_are_json(self) -> Result:
        res = Result("no 500, and every error answer is GitLab's JSON")
        for op in self.h.ops:
            if op.status is None or op.status < 400:
                continue
            if op.kind == "head":  # a HEAD answer has no body, by HTTP
                continue
            res.checked += 1
            if op.status == 500 or (op.status >= 500 and op.status not in (502, 503, 504)):
                res.fail(f"op {op.id} ({op.kind}): {op.status} {op.body[:120]}")
            elif not op.extra.get("json"):
                res.fail(f"op {op.id} ({op.kind}): {op.status} is not JSON: {op.body[:120]!r}")
        res.problems = res.problems[:_SHOWN * 3]
        return res

    def rss_within_bound(self) -> Result:
        res = Result(f"gateway RSS within the documented bound ({self.rss_bound >> 20} MiB)")
        for name, samples in sorted(self.h.rss.items()):
            res.checked += len(samples)
            peak = max((rss for _, rss in samples), default=0)
            if peak > self.rss_bound:
                res.fail(f"{name}: peak RSS {peak >> 20} MiB")
        return res

    def faults_carried_out(self) -> Result:
        res = Result("every planned fault was injected and undone")
        for f in self.h.faults:
            res.checked += 1
            if f.error:
                res.fail(f"{f.kind} {f.target} at {f.start:.1f}s: {f.error}")
        return res


def peak_rss(history: History) -> dict[str, int]:
    return {n: max((r for _, r in s), default=0) for n, s in history.rss.items()}


def faults_by_kind(faults: Iterable[Fault]) -> Counter[str]:
    return Counter(f.kind for f in faults)
