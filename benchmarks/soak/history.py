"""What the clients did and what the faults were, as plain records (written as JSON lines)."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

# Outcomes of an operation, as the client saw it.
OK = "ok"  # 2xx (the file is there / the delete happened)
REFUSED = "refused"  # a 4xx: nothing changed
FAILED = "failed"  # a 5xx from the gateway: nothing should have changed (see checker)
UNKNOWN = "unknown"  # no answer, or nginx's 502/504: it may or may not have happened
CUT = "cut"  # the client hung up before its body was sent: nothing may have changed


@dataclass
class Op:
    id: int
    client: int
    kind: str  # upload, download, range, head, list, delete_file, delete_version
    project: str  # "allow" (duplicates allowed) or "forbid"
    name: str
    version: str
    file: str = ""
    start: float = 0.0
    end: float = 0.0
    size: int = 0
    sha256: str = ""
    mode: str = ""  # upload: "chunked" or "length"; download: "redirect" or "proxy"
    select: bool = False  # upload with ?select=package_file
    cut: str = ""  # "", "body" (mid-body), "answer" (after the body, before the answer)
    cut_at: int = -1
    range: tuple[int, int] | None = None
    status: int | None = None
    outcome: str = ""
    error: str = ""
    body: str = ""  # an error answer's body (the first 300 characters)
    received: int = 0  # bytes received (downloads)
    received_sha256: str = ""
    checksum_header: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Fault:
    kind: str
    target: str
    planned: float
    hold: float
    start: float = 0.0
    end: float = 0.0
    error: str = ""


class History:
    """Thread-safe: faults are recorded from the scheduler's thread."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.ops: list[Op] = []
        self.faults: list[Fault] = []
        self.rss: dict[str, list[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        self._next = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def new_op(self, **fields: Any) -> Op:
        with self._lock:
            self._next += 1
            op = Op(id=self._next, start=self.now(), **fields)
            self.ops.append(op)
        return op

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def add_rss(self, instance: str, rss: int) -> None:
        with self._lock:
            self.rss.setdefault(instance, []).append((self.now(), rss))

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "history.jsonl").open("wb") as f:
            for op in self.ops:
                f.write(orjson.dumps(op.as_dict()) + b"\n")
        (folder / "faults.json").write_bytes(orjson.dumps(
            [dataclasses.asdict(x) for x in self.faults], option=orjson.OPT_INDENT_2))
        (folder / "rss.json").write_bytes(orjson.dumps(self.rss))
