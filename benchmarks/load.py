"""A pool of HTTP clients that asks for one URL again and again for a fixed time.

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
              expect: int) -> dict[str, object]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
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

        await asyncio.gather(*(client() for _ in range(clients)))
    return {"requests": len(latencies), "errors": errors, "latencies": latencies}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--expect", type=int, default=302)
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(run(args.url, headers, args.clients, args.seconds, args.expect))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
