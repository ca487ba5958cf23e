"""The report: Markdown tables (operations by kind and outcome, faults by kind, invariants,
peak RSS), the history as JSON lines, and a plot of throughput over time with the faults
marked (matplotlib, from the ``bench`` extra; skipped with a note when it is missing)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from benchmarks.soak.checker import peak_rss
from benchmarks.soak.history import CUT, FAILED, OK, REFUSED, UNKNOWN
from benchmarks.soak.profiles import FAULT_KINDS
from benchmarks.soak.run import STALE_SECONDS, Outcome

OUTCOMES = (OK, REFUSED, FAILED, UNKNOWN, CUT)
KINDS = ("upload", "download", "range", "head", "list", "delete_file", "delete_version")


def markdown(outcome: Outcome, command: str, machine: str) -> str:
    h = outcome.history
    p = outcome.profile
    lines = [
        f"Soak `{p.name}` profile, seed **{outcome.seed}**: {p.duration:g} s, {p.clients} "
        f"clients, {len(h.ops)} operations, {len(h.faults)} faults — "
        f"**{'PASSED' if outcome.passed else 'FAILED'}**",
        "",
        f"Replay: `{command}`. Machine: {machine}. Shortened for the soak: "
        f"`GATEWAY_STALE_UPLOAD_SECONDS={STALE_SECONDS}`, `GATEWAY_SHUTDOWN_TIMEOUT=5`, "
        "`GATEWAY_BUFFER_BUDGET=64MiB`, `GATEWAY_PART_SIZE=5MiB`; PostgreSQL without fsync. "
        f"The cluster settled {outcome.settled_after:.0f} s after the load stopped.",
        "",
        "| operation | " + " | ".join(OUTCOMES) + " | total |",
        "|---|" + "---:|" * (len(OUTCOMES) + 1),
    ]
    counts = Counter((o.kind, o.outcome) for o in h.ops)
    for kind in KINDS:
        row = [counts[(kind, x)] for x in OUTCOMES]
        lines.append(f"| {kind} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    lines += _details(outcome)
    lines += ["", "| fault | injected | seconds held |", "|---|---:|---:|"]
    held: dict[str, float] = defaultdict(float)
    for f in h.faults:
        held[f.kind] += f.end - f.start
    byk = Counter(f.kind for f in h.faults)
    for kind in FAULT_KINDS:
        lines.append(f"| {kind} | {byk[kind]} | {held[kind]:.1f} |")
    lines += ["", "| invariant | checked | result |", "|---|---:|---|"]
    for r in outcome.results:
        result = "pass" if r.passed else "**FAIL**: " + "; ".join(r.problems[:3])
        lines.append(f"| {r.name} | {r.checked} | {result} |")
    peaks = peak_rss(h)
    lines += ["", "Peak RSS per gateway (bound " f"{outcome.rss_bound >> 20} MiB): " + ", ".join(
        f"{n} {v >> 20} MiB" for n, v in sorted(peaks.items()))]
    return "\n".join(lines) + "\n"


def _details(outcome: Outcome) -> list[str]:
    ops = outcome.history.ops
    ups = [o for o in ops if o.kind == "upload"]
    acked = [o for o in ups if o.outcome == OK]
    moved = sum(o.size for o in acked) + sum(o.received for o in ops if o.kind != "upload")
    modes = Counter(o.mode for o in ops if o.kind in ("download", "range") and o.mode)
    ranged = [o for o in ops if o.kind == "range" and o.range and o.outcome == OK]
    by_s3 = sum(o.mode == "redirect" and o.received == o.range[1] - o.range[0] + 1
                for o in ranged)
    by_gateway = sum(o.mode == "proxy" and o.extra.get("answer_status") == 206
                     for o in ranged)
    whole = sum(o.extra.get("answer_status") == 200 and o.received != o.range[1] - o.range[0] + 1
                for o in ranged)
    secs = max(outcome.profile.duration, 1.0)
    return [
        "",
        f"Uploads: {len(acked)} of {len(ups)} answered 201/200, "
        f"{sum(o.size for o in acked) / 2**20:.0f} MiB stored, largest "
        f"{max((o.size for o in ups), default=0) / 2**20:.1f} MiB; chunked "
        f"{sum(o.mode == 'chunked' for o in ups)}, with Content-Length "
        f"{sum(o.mode == 'length' for o in ups)}; into the duplicate-forbidding project "
        f"{sum(o.project == 'forbid' for o in ups)}; cut by the client "
        f"{sum(bool(o.cut) for o in ups)}. Downloads by how they were served: "
        + ", ".join(f"{k} {v}" for k, v in sorted(modes.items()))
        + f". Ranges (their bytes checked against the same range of what was sent): "
        f"{by_gateway} answered 206 by the proxying gateway, {by_s3} served by S3 after the "
        f"redirect, {whole} answered with the whole file. Throughput {len(ops) / secs:.1f} ops/s, "
        f"{moved / secs / 2**20:.1f} MiB/s.",
    ]


def write(outcome: Outcome, folder: Path, command: str, machine: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    outcome.history.write(folder)
    text = markdown(outcome, command, machine)
    problems = [f"- {r.name}: {p}" for r in outcome.results for p in r.problems]
    if problems:
        text += "\nProblems:\n\n" + "\n".join(problems) + "\n"
    (folder / "report.md").write_text(text)
    return text


def plot(outcome: Outcome, path: Path) -> bool:
    """Operations and MiB finished per second, with each fault's span shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    h = outcome.history
    seconds = int(max((o.end for o in h.ops), default=0)) + 1
    ops = [0] * seconds
    mib = [0.0] * seconds
    failed = [0] * seconds
    for o in h.ops:
        s = min(int(o.end), seconds - 1)
        ops[s] += 1
        if o.outcome in (FAILED, UNKNOWN):
            failed[s] += 1
        moved = o.size if o.kind == "upload" and o.outcome == OK else o.received
        mib[s] += moved / 2**20
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6))
    top.plot(range(seconds), ops, label="operations finished / s", lw=1)
    top.plot(range(seconds), failed, label="... failed or unknown", lw=1, color="tab:red")
    bottom.plot(range(seconds), mib, label="MiB moved / s", lw=1, color="tab:green")
    colours = dict(zip(FAULT_KINDS, plt.get_cmap("tab10").colors, strict=False))
    seen: set[str] = set()
    for f in h.faults:
        for ax in (top, bottom):
            ax.axvspan(f.start, max(f.end, f.start + 0.3), color=colours[f.kind], alpha=0.25,
                       label=None if f.kind in seen or ax is bottom else f.kind)
        seen.add(f.kind)
    top.legend(loc="upper left", fontsize=7, ncol=3)
    bottom.legend(loc="upper left", fontsize=7)
    bottom.set_xlabel("seconds since the load started")
    top.set_title(f"packgate soak, {outcome.profile.name} profile, seed {outcome.seed}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
