"""The benchmark's results and their table (Markdown, readable as plain text) and plot."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import MB, LoadResult, MiB, SmallResult, Upload

# The targets, checked in the table.
CPU_FACTOR = 1.3
CEILING_MB_S = 650
SINGLE_RSS_MIB = 160
REDIRECTS_PER_S = 5000
REDIRECTS_VS_BARE = 0.5
PROXY_VS_DIRECT = 0.9
SWEEP_VS_DIRECT = 0.7
# The README's memory bound of a gateway process: its idle size (taken high), the buffer budget,
# one more part buffer, and 1.25 MiB per connection sending a body.
IDLE_MIB = 80
PER_UPLOAD_MIB = 1.25
# A proxied download holds no more than this above the process's size before it.
PROXY_RSS_GROWTH_MIB = 32
REDIRECT_P99_MS = 20
RESUMABLE_FACTOR = 0.8
# Small files (issue: into rclone ≥ 0.5x direct PutObject with p99 < 50 ms; ≥ 10x the OCI
# registry's rate into moto).
SMALL_VS_DIRECT = {"rclone": 0.5}
SMALL_P99_MS = {"rclone": 50.0}
SMALL_VS_PEER = 10.0
PEER = "OCI registry"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _size(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n / 1024:.0f} KiB"


def _opt(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


@dataclass
class Report:
    size: int
    rounds: int
    machine: str
    budget: int
    command: str
    floor_ms: float = 0.0
    uploads: dict[tuple[str, str], list[Upload]] = field(default_factory=lambda: defaultdict(list))
    rss: dict[str, int] = field(default_factory=dict)
    sweep: list[dict] = field(default_factory=list)
    downloads: LoadResult | None = None
    downloads_paced: LoadResult | None = None
    download_rate: float = 0.0
    downloads_server: str = ""
    resumable_chunk: int = 0
    download_clients: int = 0
    small: dict[tuple[str, str], list[SmallResult]] = field(
        default_factory=lambda: defaultdict(list))
    small_size: int = 0
    small_clients: int = 0
    peer_missing: bool = False
    round_trips: dict | None = None
    downloads_bare: LoadResult | None = None
    download_workers: int = 1
    proxy_rss: tuple[int, int] | None = None
    proxy_server: str = ""
    part_size: int = 16 * MiB
    proxy: dict[str, list[Upload]] = field(default_factory=lambda: defaultdict(list))

    def add_upload(self, server: str, side: str, up: Upload) -> None:
        self.uploads[(server, side)].append(up)

    def add_sweep(self, target: str, n: int, size: int, wall: float, failed: int,
                  rss: int, *, side: str = "gateway", workers: int = 1) -> None:
        self.sweep.append({"target": target, "n": n, "mb_s": n * size / MB / wall,
                           "failed": failed, "rss": rss, "size": size, "side": side,
                           "workers": workers})

    def add_small(self, server: str, side: str, res: SmallResult) -> None:
        self.small[(server, side)].append(res)

    def _best_small(self, server: str, side: str) -> SmallResult | None:
        runs = self.small.get((server, side))
        return max(runs, key=lambda r: r.per_second) if runs else None

    def _rates(self, server: str, side: str) -> list[float]:
        return [u.mb_per_s for u in self.uploads.get((server, side), [])]

    @staticmethod
    def _best(ups: list[Upload]) -> Upload:
        return max(ups, key=lambda u: u.mb_per_s)

    def _cpu_ms(self, server: str) -> float | None:
        ups = [u for u in self.uploads.get((server, "gateway"), []) if u.cpu_seconds]
        if not ups:
            return None
        return min(u.cpu_seconds / (u.size / MB) for u in ups) * 1000  # type: ignore[operator]

    def _cpu_median(self, server: str) -> float:
        ups = [u for u in self.uploads.get((server, "gateway"), []) if u.cpu_seconds]
        return statistics.median(u.cpu_seconds / (u.size / MB) for u in ups) * 1000  # type: ignore[operator]

    def _resumable_rows(self) -> list[str]:
        cases = sorted(s for s, side in self.uploads if side == "resumable")
        if not cases:
            return []
        out = [
            f"### Resumable upload ({self.resumable_chunk / MiB:.0f} MiB requests, "
            "`gateway upload`) against a plain PUT, the same gateway and S3 server",
            "",
            "| S3 server | PUT MB/s best / median | resumable MB/s best / median "
            "| ratio best / median | target | met | gateway CPU-ms/MB PUT / resumable "
            "| client CPU-ms/MB curl / `gateway upload` |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for case in cases:
            put, res = self._rates(case, "put"), self._rates(case, "resumable")
            best, med = max(res) / max(put), statistics.median(res) / statistics.median(put)
            out.append(
                f"| {case.removeprefix('resumable-')} | {max(put):.0f} / "
                f"{statistics.median(put):.0f} | {max(res):.0f} / {statistics.median(res):.0f} "
                f"| {best:.2f} / {med:.2f} | ≥ {RESUMABLE_FACTOR} | "
                f"{_yes(best >= RESUMABLE_FACTOR)} "
                f"| {self._cpu_per_mb(case, 'put')} / {self._cpu_per_mb(case, 'resumable')} "
                f"| {self._cpu_per_mb(case, 'put', 'client_cpu')} / "
                f"{self._cpu_per_mb(case, 'resumable', 'client_cpu')} |")
        return [*out, "", "The resumable side includes the client process's start; CPU figures "
                "are medians.", ""]

    def _cpu_per_mb(self, server: str, side: str, key: str | None = None) -> str:
        """The median CPU-ms/MB of a side's uploads: the gateway's, or ``extra[key]``'s."""
        ups = self.uploads.get((server, side), [])
        cpu = [u.extra.get(key) if key else u.cpu_seconds for u in ups]
        per_mb = [c / (u.size / MB) * 1000 for c, u in zip(cpu, ups, strict=True) if c]
        return f"{statistics.median(per_mb):.2f}" if per_mb else "n/a"

    def markdown(self, targets: dict[str, float]) -> str:
        out = [
            f"Command: `{self.command}`",
            "",
            f"Machine: {self.machine}",
            "",
            f"File {self.size / MiB:.0f} MiB, {self.rounds} rounds per case, MB = 10^6 bytes, "
            f"buffer budget {self.budget / MiB:.0f} MiB. md5+sha1+sha256 floor measured in "
            f"this run: {self.floor_ms:.2f} CPU-ms/MB.",
            "",
        ]
        servers = sorted({s for s, side in self.uploads if side == "direct"},
                         key=lambda s: list(targets).index(s) if s in targets else 99)
        if servers:
            out += [
                "### Uploads: gateway against direct (boto3 upload_file) to the same S3 server",
                "",
                "| S3 server | direct MB/s best / median | gateway MB/s best / median "
                "| ratio best / median | target | met |",
                "|---|---|---|---|---|---|",
            ]
            for s in servers:
                d, g = self._rates(s, "direct"), self._rates(s, "gateway")
                ratio_best = max(g) / max(d)
                ratio_med = statistics.median(g) / statistics.median(d)
                t = targets.get(s)
                out.append(
                    f"| {s} | {max(d):.0f} / {statistics.median(d):.0f} | {max(g):.0f} / "
                    f"{statistics.median(g):.0f} | {ratio_best:.2f} / {ratio_med:.2f} | "
                    f"{'≥ ' + format(t, '.1f') if t else '-'} | "
                    f"{_yes(ratio_best >= t) if t else '-'} |"
                )
            out += [
                "",
                "### Phases and costs of the best rounds",
                "",
                "| S3 server | direct parts s | direct complete s | gateway parts s "
                "| gateway complete s | gateway CPU-ms/MB | x floor (≤ 1.3) | peak RSS MiB "
                "(≤ 160) |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for s in servers:
                bd = self._best(self.uploads[(s, "direct")])
                bg = self._best(self.uploads[(s, "gateway")])
                cpu = self._cpu_ms(s)
                factor = cpu / self.floor_ms if cpu and self.floor_ms else None
                rss = self.rss.get(s)
                out.append(
                    f"| {s} | {_opt(bd.parts_seconds)} | {_opt(bd.complete_seconds)} | "
                    f"{_opt(bg.parts_seconds)} | {_opt(bg.complete_seconds)} | "
                    f"{_opt(cpu)} | {_opt(factor)} "
                    f"{_yes(factor <= CPU_FACTOR) if factor else ''} | "
                    f"{rss / MiB:.0f} {_yes(rss / MiB <= SINGLE_RSS_MIB)} |"
                    if rss else f"| {s} | - | - | - | - | - | - | - |"
                )
            out.append("")
        out += self._peer_table()
        out += self._small_table()
        out += self._round_trips()
        if ("null", "gateway") in self.uploads:
            g = self._rates("null", "gateway")
            cpu = self._cpu_ms("null")
            rss = self.rss.get("null", 0)
            out += [
                "### The gateway's own ceiling: the discarding store in place of S3",
                "",
                "| MB/s best / median | target | met | CPU-ms/MB | x floor | peak RSS MiB |",
                "|---|---|---|---|---|---|",
                f"| {max(g):.0f} / {statistics.median(g):.0f} | ≥ {CEILING_MB_S} | "
                f"{_yes(max(g) >= CEILING_MB_S)} | {_opt(cpu)} | "
                f"{_opt(cpu / self.floor_ms if cpu and self.floor_ms else None)} | "
                f"{rss / MiB:.0f} |",
                "",
            ]
        if ("metrics-on", "gateway") in self.uploads:
            out += [
                "### Metrics on and off: the discarding store, the same run, rounds alternating",
                "",
                "| metrics | MB/s best / median | CPU-ms/MB best / median "
                "| median MB/s against off | median CPU-ms/MB against off |",
                "|---|---|---|---|---|",
            ]
            off_rate = statistics.median(self._rates("metrics-off", "gateway"))
            off_cpu = self._cpu_median("metrics-off")
            for name, label in (("metrics-off", "off (`GATEWAY_METRICS=false`)"),
                                ("metrics-on", "on, scraped every second")):
                g = self._rates(name, "gateway")
                cpu = self._cpu_median(name)
                out.append(
                    f"| {label} | {max(g):.0f} / {statistics.median(g):.0f} | "
                    f"{_opt(self._cpu_ms(name))} / {cpu:.2f} | "
                    f"{(statistics.median(g) / off_rate - 1) * 100:+.1f} % | "
                    f"{(cpu / off_cpu - 1) * 100:+.1f} % |")
            out += [
                "",
                "CPU time per MB is the steadier figure on a shared machine: throughput also "
                "moves with whatever else runs.",
                "",
            ]
        out += self._resumable_rows()
        out += self._sweep_table()
        out += self._proxy_table()
        if self.downloads is not None:
            d, p = self.downloads, self.downloads_paced
            out += [
                f"### Redirect downloads: {self.download_workers} gateway worker(s), "
                f"{self.downloads_server} presigning, {self.download_clients} clients",
                "",
                "| load | answers/s | p50 ms | p99 ms | errors | target | met |",
                "|---|---|---|---|---|---|---|",
                f"| as fast as answered | {d.per_second:.0f} | {d.p50_ms:.1f} | {d.p99_ms:.1f} | "
                f"{d.errors} | ≥ {REDIRECTS_PER_S}/s | {_yes(d.per_second >= REDIRECTS_PER_S)} |",
            ]
            if (b := self.downloads_bare) is not None:
                vs = d.per_second / b.per_second if b.per_second else 0.0
                out.append(
                    f"| bare aiohttp app, the same 302, as fast as answered | "
                    f"{b.per_second:.0f} | {b.p50_ms:.1f} | {b.p99_ms:.1f} | {b.errors} | "
                    f"gateway ≥ {REDIRECTS_VS_BARE}x: {vs:.2f} | {_yes(vs >= REDIRECTS_VS_BARE)} |")
            if p is not None:
                met = p.per_second >= 0.97 * self.download_rate and p.p99_ms < REDIRECT_P99_MS
                out.append(
                    f"| paced at {self.download_rate:.0f}/s | {p.per_second:.0f} | "
                    f"{p.p50_ms:.1f} | {p.p99_ms:.1f} | {p.errors} | p99 < {REDIRECT_P99_MS} ms "
                    f"| {_yes(met)} |"
                )
            out += [
                "",
                f"As fast as answered, {self.download_clients} clients wait on each other: the "
                f"mean latency is {self.download_clients} / rate (Little's law), so p99 is "
                "judged on the paced run.",
                "",
            ]
            if d.cpu_ms is not None:
                bare = f"; the bare app {b.cpu_ms:.2f}" if b and b.cpu_ms is not None else ""
                out += [f"CPU per redirect, as fast as answered: the gateway's processes "
                        f"{d.cpu_ms:.2f} ms, PostgreSQL's {d.db_cpu_ms or 0:.2f} ms{bare} "
                        "(user + system time over the load, divided by the answers).", ""]
        return "\n".join(out)

    def _peer_table(self) -> list[str]:
        if self.peer_missing:
            return [f"The {PEER} (`docker-registry`) was not installed: no peer in this run.", ""]
        big = self.uploads.get(("moto", "peer"))
        small = self._best_small("moto", "peer")
        if not big and small is None:
            return []
        out = [
            f"### The {PEER} as a peer: the same bytes into the same moto, same client, "
            "same run",
            "",
            "| upload | direct | gateway | OCI registry | gateway / registry |",
            "|---|---|---|---|---|",
        ]
        if big:
            d, g, p = (max(self._rates("moto", side)) for side in ("direct", "gateway", "peer"))
            out.append(f"| {self.size / MiB:.0f} MiB, MB/s best (curl; direct: boto3) | {d:.0f} "
                       f"| {g:.0f} | {p:.0f} | {g / p:.1f} |")
            cpu_g, cpu_p = self._cpu_ms("moto"), self._cpu_ms_side("moto", "peer")
            if cpu_g and cpu_p:
                out.append(f"| {self.size / MiB:.0f} MiB, server CPU-ms/MB (gateway: md5, sha1 "
                           f"and sha256; registry: sha256) | - | {cpu_g:.2f} | {cpu_p:.2f} | "
                           f"{cpu_g / cpu_p:.2f} |")
        if small is not None:
            d = self._best_small("moto", "direct")
            g = self._best_small("moto", "gateway")
            if d is not None and g is not None:
                ratio = g.per_second / small.per_second if small.per_second else float("inf")
                out.append(
                    f"| {self.small_size / 1024:.0f} KiB x {self.small_clients} clients, "
                    f"uploads/s best | {d.per_second:.0f} | {g.per_second:.0f} | "
                    f"{small.per_second:.0f} | {ratio:.1f} (≥ {SMALL_VS_PEER:.0f}: "
                    f"{_yes(ratio >= SMALL_VS_PEER)}) |")
        out += ["", f"The {PEER} runs against moto only: `rclone serve s3` breaks its upload "
                "resume. Its blob push is curl's POST and PUT of the whole file with its digest.",
                ""]
        return out

    def _small_table(self) -> list[str]:
        servers = sorted({s for s, _ in self.small})
        if not servers:
            return []
        out = [
            f"### Small files: {self.small_size / 1024:.0f} KiB uploads, "
            f"{self.small_clients} clients, best round",
            "",
            "| S3 server | client | uploads/s | p50 ms | p99 ms | errors | against direct "
            "| target | met |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        labels = {"direct": "direct PutObject (aiobotocore)", "gateway": "gateway PUT",
                  "peer": f"{PEER} blob push"}
        for s in servers:
            d = self._best_small(s, "direct")
            for side in ("direct", "gateway", "peer"):
                r = self._best_small(s, side)
                if r is None:
                    continue
                vs = r.per_second / d.per_second if d and d.per_second else None
                target, met = "-", "-"
                if side == "gateway" and s in SMALL_VS_DIRECT and vs is not None:
                    target = f"≥ {SMALL_VS_DIRECT[s]} and p99 < {SMALL_P99_MS[s]:.0f} ms"
                    met = _yes(vs >= SMALL_VS_DIRECT[s] and r.p99_ms < SMALL_P99_MS[s])
                out.append(f"| {s} | {labels[side]} | {r.per_second:.0f} | {r.p50_ms:.1f} | "
                           f"{r.p99_ms:.1f} | {r.errors} | {_opt(vs)} | {target} | {met} |")
        out.append("")
        return out

    def _sweep_table(self) -> list[str]:
        if not self.sweep:
            return []
        out = [
            f"### Concurrent uploads ({_size(self.sweep[0]['size'])} each, "
            f"a fresh gateway per step, buffer budget {self.budget / MiB:.0f} MiB; direct: "
            "a boto3 upload_file process each)",
            "",
            "| store | uploads | gateway workers | gateway MB/s | direct MB/s | ratio "
            f"(≥ {SWEEP_VS_DIRECT}) | failed | peak RSS MiB | bound MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        direct = {(r["target"], r["n"]): r for r in self.sweep if r["side"] == "direct"}
        for row in (r for r in self.sweep if r["side"] == "gateway"):
            d = direct.get((row["target"], row["n"]))
            ratio = row["mb_s"] / d["mb_s"] if d else None
            judged = ratio is not None and row["n"] == max(r["n"] for r in self.sweep)
            failed = row["failed"] + (d["failed"] if d else 0)
            out.append(
                f"| {row['target']} | {row['n']} | {row['workers']} | {row['mb_s']:.0f} | "
                f"{d['mb_s']:.0f} | " if d else
                f"| {row['target']} | {row['n']} | {row['workers']} | {row['mb_s']:.0f} | - | ")
            bound = (row["workers"] * (IDLE_MIB + (self.budget + self.part_size) / MiB)
                     + PER_UPLOAD_MIB * row["n"])
            out[-1] += (f"{_opt(ratio)}{' ' + _yes(ratio >= SWEEP_VS_DIRECT) if judged else ''}"
                        f" | {failed}{'' if failed == 0 else ' **no**'} | "
                        f"{row['rss'] / MiB:.0f} {_yes(row['rss'] / MiB <= bound)} | "
                        f"{bound:.0f} |")
        out += ["", "With several workers the peak RSS is the sum of each process's peak, and "
                "the bound is per process (each has its own budget).", ""]
        return out

    def _proxy_table(self) -> list[str]:
        if not self.proxy.get("gateway") or not self.proxy.get("direct"):
            return []
        g = [u.mb_per_s for u in self.proxy["gateway"]]
        d = [u.mb_per_s for u in self.proxy["direct"]]
        ratio = max(g) / max(d)
        size = self.proxy["gateway"][0].size
        idle, peak = self.proxy_rss or (0, 0)
        return [
            f"### Proxy downloads: {_size(size)} through GATEWAY_DOWNLOAD_MODE=proxy "
            f"against a presigned GET from {self.proxy_server}, both with curl",
            "",
            "| direct MB/s best / median | gateway MB/s best / median | ratio | target | met "
            "| gateway RSS MiB before / peak |",
            "|---|---|---|---|---|---|",
            f"| {max(d):.0f} / {statistics.median(d):.0f} | {max(g):.0f} / "
            f"{statistics.median(g):.0f} | {ratio:.2f} | ≥ {PROXY_VS_DIRECT} | "
            f"{_yes(ratio >= PROXY_VS_DIRECT)} | {idle / MiB:.0f} / {peak / MiB:.0f} "
            f"(flat: ≤ +{PROXY_RSS_GROWTH_MIB}: "
            f"{_yes(peak - idle <= PROXY_RSS_GROWTH_MIB * MiB)}) |",
            "",
        ]

    def _round_trips(self) -> list[str]:
        out: list[str] = []
        if (rt := self.round_trips) is not None:
            s3 = ", ".join(f"{k} {v:.2f}" for k, v in sorted(rt["s3"].items())) or "none"
            out += [
                f"Per small upload ({rt['uploads']} counted one at a time into {rt['server']}, "
                "through counting proxies): "
                f"**{rt['pg']:.2f} PostgreSQL round trips** (each Sync or simple Query) and "
                f"S3 requests: {s3}. Why each is there: `gateway/uploads.py` (`receive`) and "
                "`gateway/packages/commit.py`.",
                "",
            ]
        return out

    def _cpu_ms_side(self, server: str, side: str) -> float | None:
        ups = [u for u in self.uploads.get((server, side), []) if u.cpu_seconds]
        if not ups:
            return None
        return min(u.cpu_seconds / (u.size / MB) for u in ups) * 1000  # type: ignore[operator]

    def plot(self, path: Path) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed (pip install '.[bench]'): no plot written")
            return
        fig, (by_size, by_n) = plt.subplots(1, 2, figsize=(11, 4.2))
        self._plot_sizes(by_size)
        self._plot_sweep(by_n)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    def _plot_sizes(self, ax: Any) -> None:
        """MB/s against file size: the small-file rate (uploads/s x size) and the big file."""
        names = {"direct": "direct", "gateway": "gateway", "peer": PEER}
        for server in sorted({s for s, _ in self.small} | {s for s, _ in self.uploads
                                                             if s in ("moto", "rclone")}):
            for side, label in names.items():
                pts = []
                if (r := self._best_small(server, side)) is not None:
                    pts.append((self.small_size, r.per_second * self.small_size / MB))
                if self.uploads.get((server, side)):
                    pts.append((self.size, max(self._rates(server, side))))
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=f"{label} → {server}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("file size (bytes)")
        ax.set_ylabel("MB/s")
        ax.set_title("Upload throughput against file size")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)

    def _plot_sweep(self, ax: Any) -> None:
        for key in sorted({(r["target"], r["side"], r["workers"]) for r in self.sweep}):
            target, side, workers = key
            rows = [r for r in self.sweep if (r["target"], r["side"], r["workers"]) == key]
            label = (f"gateway ({workers} worker{'s' if workers > 1 else ''}) → {target}"
                     if side == "gateway" else f"direct → {target}")
            ax.plot([r["n"] for r in rows], [r["mb_s"] for r in rows], marker="o", label=label)
        ns = sorted({r["n"] for r in self.sweep})
        if ns:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns, labels=[str(n) for n in ns])
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no concurrency sweep in this run", ha="center",
                    transform=ax.transAxes)
        ax.set_xlabel("concurrent uploads")
        ax.set_ylabel("aggregate MB/s")
        ax.set_title("Upload throughput against concurrency")
        ax.grid(True, alpha=0.3)
