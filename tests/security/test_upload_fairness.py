"""One principal cannot stall every upload of a process: under 64 uploads that trickle (half
of them after sending enough to take a part buffer each), a 5-byte upload and a 100 MiB upload
both answer 201, and the gateway's peak memory stays within its documented bound. Measured on
a real ``gateway serve`` with psutil."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from pathlib import Path

import aiohttp
import psutil

from gateway.config import MiB, Settings
from tests.conftest import World, start_gateway
from tests.faults.rawhttp import RawUpload, put_head
from tests.security.edgeclient import port_of

BUDGET = 64 * MiB
TRICKLERS = 64
# The bound the README documents: the idle process, the buffer budget, one part buffer (a slow
# upload's bytes are copied out of its buffer before the buffer is given back), and per
# connection sending a body what aiohttp buffers unread (up to 2 x 256 KiB and one more read)
# and the first bytes of a part held before a buffer is taken (256 KiB and one more read).
PART = 8 * MiB
PER_CONNECTION = 1280 * 1024
# Generous: these answers take a second or two on a quiet machine.
DEADLINE = 120


def url(gw, world: World, name: str) -> str:
    return f"{gw.url}/api/v4/projects/{world.project_id}/packages/generic/pkg/1.0/{name}"


async def trickle(raw: RawUpload, first: bytes, stop: asyncio.Event) -> None:
    with contextlib.suppress(ConnectionError):
        if first:
            await raw.send(first)
        while not stop.is_set():
            await raw.send(b"x")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def sample_rss(proc: psutil.Process, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


async def test_small_and_large_uploads_complete_beside_64_trickling_uploads(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    gw = start_gateway(settings, tmp_path, GATEWAY_BUFFER_BUDGET=str(BUDGET),
                       GATEWAY_PART_SIZE=str(PART))
    proc = psutil.Process(gw.proc.pid)
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    raws: list[RawUpload] = []
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{gw.url}/-/health") as resp:
                assert resp.status == 200
            baseline = proc.memory_info().rss
            peak = [baseline]
            tasks.append(asyncio.create_task(sample_rss(proc, peak, stop)))
            token = world.tokens["developer"]
            for i in range(TRICKLERS):
                raw = await RawUpload("127.0.0.1", port_of(gw.url)).connect()
                path = url(gw, world, f"slow{i}.bin").removeprefix(gw.url)
                await raw.send(put_head(path, token, length=100 * MiB))
                raws.append(raw)
                # Half start with 2 MiB at once (enough to take a part buffer), then trickle.
                first = os.urandom(2 * MiB) if i % 2 else b""
                tasks.append(asyncio.create_task(trickle(raw, first, stop)))
            await asyncio.sleep(3)  # the budget is spent on slow uploads by now
            headers = {"PRIVATE-TOKEN": token}
            big = os.urandom(100 * MiB)
            async with asyncio.timeout(DEADLINE):
                t0 = time.monotonic()
                async with session.put(url(gw, world, "small.txt") + "?select=package_file",
                                       data=b"hello", headers=headers) as resp:
                    small = (resp.status, await resp.json())
                t1 = time.monotonic()
                async with session.put(url(gw, world, "big.bin") + "?select=package_file",
                                       data=big, headers=headers) as resp:
                    large = (resp.status, await resp.json())
                t2 = time.monotonic()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for raw in raws:
            raw.close()
        gw.stop()
    assert small[0] == 200 and small[1]["size"] == 5
    assert large[0] == 200 and large[1]["file_sha256"] == hashlib.sha256(big).hexdigest()
    bound = baseline + BUDGET + PART + (TRICKLERS + 2) * PER_CONNECTION
    # Figures for the README, not assertions on time.
    print(f"5 bytes in {t1 - t0:.1f} s, 100 MiB in {t2 - t1:.1f} s; baseline "
          f"{baseline / MiB:.0f} MiB, peak {peak[0] / MiB:.0f} MiB, bound {bound / MiB:.0f} MiB")
    assert peak[0] <= bound
