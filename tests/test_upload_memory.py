"""A gateway's resident memory stays within the bound the README documents ("Performance"):
its idle size + ``GATEWAY_BUFFER_BUDGET`` + one part buffer + about 1.25 MiB per connection
sending a body. Measured with psutil on a real ``gateway serve`` taking real uploads into S3.

Part buffers the budget lets go must give their memory back at once, whatever still refers to
them (gateway/buffers.py): slow uploads that gave their buffer back, failed uploads, and the
heap left behind by many part-sized buffers are each a way to go over the bound otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psutil

from gateway.config import MiB, Settings
from tests.conftest import World, start_gateway
from tests.faults.rawhttp import RawUpload, put_head
from tests.security.edgeclient import port_of

BUDGET = 32 * MiB
# Per connection sending a body: what aiohttp holds unread and a part's first bytes (README).
PER_CONNECTION = 1280 * 1024


class PeakRss:
    """The largest RSS of a process, sampled every 10 ms on a thread of its own (the test's
    event loop is busy sending)."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.baseline = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._proc.memory_info().rss)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[PeakRss]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)

    def figures(self, bound: int) -> str:
        return (f"baseline {self.baseline / MiB:.1f} MiB, peak {self.peak / MiB:.1f} MiB, "
                f"bound {bound / MiB:.1f} MiB")


def url(gw, world: World, name: str) -> str:
    return f"{gw.url}/api/v4/projects/{world.project_id}/packages/generic/pkg/1.0/{name}"


@contextlib.asynccontextmanager
async def serving(settings: Settings, tmp_path: Path, world: World,
                  part: int) -> AsyncIterator[tuple[object, aiohttp.ClientSession, PeakRss]]:
    """``gateway serve`` with the test's budget and part size, idle after one small upload
    (its first upload loads what every later one uses)."""
    gw = start_gateway(settings, tmp_path, GATEWAY_BUFFER_BUDGET=str(BUDGET),
                       GATEWAY_PART_SIZE=str(part))
    try:
        async with aiohttp.ClientSession(
            headers={"PRIVATE-TOKEN": world.tokens["developer"]}
        ) as session:
            async with session.put(url(gw, world, "warm.txt"), data=b"hello") as resp:
                assert resp.status == 201, await resp.text()
            rss = PeakRss(gw.proc.pid)
            with rss.sampling():
                yield gw, session, rss
    finally:
        gw.stop()


async def put(session: aiohttp.ClientSession, target: str, data: bytes, *,
              chunked: bool = False) -> tuple[int, str | None]:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    async with session.put(target + "?select=package_file",
                           data=pieces() if chunked else data) as resp:
        body = await resp.json()
        return resp.status, body.get("file_sha256") if resp.status == 200 else None


async def test_slow_uploads_that_gave_their_buffers_back_hold_only_their_bytes(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    """Four uploads take a part buffer each (the whole budget), then stall; a fast upload
    waiting for room makes them give their buffers back (their bytes copied out) and turns
    them away one by one as it needs the room. A buffer given back is gone from memory while
    its slow upload waits for its client, and a turned-away upload's buffer while its failure
    waits for the garbage collector."""
    part = 8 * MiB
    slow, stop = [], asyncio.Event()

    async def stall(raw: RawUpload) -> None:
        with contextlib.suppress(ConnectionError):
            await raw.send(os.urandom(part - MiB))
            while not stop.is_set():
                await raw.send(b"x")  # alive, never enough to fill the part
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    async with serving(settings, tmp_path, world, part) as (gw, session, rss):
        tasks = []
        for i in range(4):
            raw = await RawUpload("127.0.0.1", port_of(gw.url)).connect()
            target = url(gw, world, f"slow{i}.bin").removeprefix(gw.url)
            await raw.send(put_head(target, world.tokens["developer"], length=64 * MiB))
            slow.append(raw)
            tasks.append(asyncio.create_task(stall(raw)))
        await asyncio.sleep(1)  # each holds a part buffer by now
        data = os.urandom(40 * MiB)
        try:
            answer = await put(session, url(gw, world, "fast.bin"), data)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for raw in slow:
                raw.close()
    bound = rss.baseline + BUDGET + part + 5 * PER_CONNECTION
    print(rss.figures(bound))
    assert answer == (200, hashlib.sha256(data).hexdigest())
    assert rss.peak <= bound


async def test_rounds_of_concurrent_uploads_stay_within_the_bound(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    """Rounds of concurrent multipart uploads, with and without a length, parts of several
    sizes: the budget bounds the part buffers, and what they leave behind is not resident."""
    part = 5 * MiB
    sizes = [40 * MiB, 33 * MiB + 1, 27 * MiB + 3, 21 * MiB, 38 * MiB + 5, 30 * MiB]
    clients = len(sizes)
    bodies = [os.urandom(size) for size in sizes]
    answers: list[tuple[int, str | None]] = []
    async with serving(settings, tmp_path, world, part) as (gw, session, rss):
        for round_ in range(2):
            answers += await asyncio.gather(*(
                put(session, url(gw, world, f"r{round_}-{i}.bin"), body, chunked=i % 2 == 1)
                for i, body in enumerate(bodies)
            ))
    chunked_part = 6 * MiB  # a body of unknown length starts at 6 MiB parts
    bound = rss.baseline + BUDGET + chunked_part + clients * PER_CONNECTION
    print(rss.figures(bound))
    assert answers == [(200, hashlib.sha256(b).hexdigest()) for b in bodies] * 2
    assert rss.peak <= bound
