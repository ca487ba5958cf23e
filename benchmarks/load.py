"""A pool of HTTP clients that asks for one URL again and again for a fixed time.

Without ``--rate`` every client sends its next request as soon as the last is answered (the
most the server can do). With ``--rate`` the clients together start that many requests a
second on a fixed schedule, and a latency counts from the scheduled start, so a server that
falls behind is not flattered by clients that wait for it.

Run as a child process of the benchmark (``python -m benchmarks.load``) so the load does not
share the benchmark's interpreter; prints one JSON object: requests, errors and every latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp


async def run(url: str, headers: dict[str, str], clients: int, seconds: float,
              expect: int, rate: float | None = None) -> dict[str, object]:
    latencies: list[float] = []
    errors = 0
    begin = time.perf_counter()
    deadline = time.monotonic() + seconds
    interval = clients / rate if rate else 0.0
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(i: int) -> None:
            nonlocal errors
            due = begin + interval * i / clients
            while time.monotonic() < deadline:
                if interval:
                    if (wait := due - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                    start = due
                    due += interval
                else:
                    start = time.perf_counter()
                try:
                    async with session.get(url, headers=headers, allow_redirects=False) as resp:
                        await resp.read()
                        ok = resp.status == expect
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
    return {"requests": len(latencies), "errors": errors, "latencies": latencies}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--expect", type=int, default=302)
    parser.add_argument("--rate", type=float, default=None, help="requests per second")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(run(args.url, headers, args.clients, args.seconds, args.expect,
                             args.rate))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
