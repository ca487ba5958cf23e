"""The process-wide buffer budget: uploads wait for room, which stops reading their bodies, and
none fails for want of it."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import psutil
import pytest

from gateway import keys
from gateway.app import create_app
from gateway.buffers import STALL_WINDOW, BufferBusy, BufferPool
from gateway.config import MiB
from gateway.errors import ClientGone
from gateway.hashing import HashPools
from gateway.storage.memory import MemorySink, MemoryStore
from gateway.uploads import STAGE_BYTES, UploadLimits, stream_to_store
from tests.conftest import World

PART = MiB  # known sizes are cut in whole MiB
DEADLINE = 60


class Body:
    """A request body handed over in small pieces; counts how often it is read."""

    def __init__(self, data: bytes, piece: int = 256 * 1024) -> None:
        self.data = data
        self.piece = piece
        self.pos = 0
        self.reads = 0

    async def readany(self) -> bytes:
        self.reads += 1
        await asyncio.sleep(0)  # a socket yields to the loop between pieces
        out = self.data[self.pos : self.pos + self.piece]
        self.pos += len(out)
        return out


class GatedSink(MemorySink):
    async def write_part(self, number: int, data: memoryview, crc32: int) -> None:
        store: GatedStore = self._store  # type: ignore[assignment]
        store.arrived += 1
        await store.gate.wait()
        await super().write_part(number, data, crc32)


class GatedStore(MemoryStore):
    """Holds every part at a gate until the test opens it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.arrived = 0

    async def open_sink(self, key: str) -> GatedSink:
        sink = GatedSink(self, key)
        self.uploads[sink.upload_id] = key
        return sink


@pytest.fixture
async def pools() -> AsyncIterator[HashPools]:
    p = HashPools(2)
    yield p
    p.shutdown()


def limits(parts_in_flight: int = 2) -> UploadLimits:
    return UploadLimits(max_file_size=0, part_size=PART, parts_in_flight=parts_in_flight,
                        body_read_timeout=DEADLINE)


async def until(condition, what: str) -> None:
    """Wait (at most about DEADLINE seconds) for ``condition`` to hold."""
    for _ in range(DEADLINE * 1000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def test_acquire_waits_while_the_budget_is_spent() -> None:
    pool = BufferPool(2 * PART)
    first = await pool.acquire(PART)
    await pool.acquire(PART)
    third = asyncio.create_task(pool.acquire(PART))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not third.done()
    pool.release(first)
    await asyncio.wait_for(third, DEADLINE)
    assert pool.used == 2 * PART


async def test_released_buffer_is_handed_out_again() -> None:
    pool = BufferPool(2 * PART)
    buf = await pool.acquire(PART)
    pool.release(buf)
    assert await pool.acquire(PART) is buf


async def test_dropped_buffer_leaves_memory_while_something_still_refers_to_it() -> None:
    """What the budget no longer counts is not resident: a view kept of a dropped buffer (a
    failed upload's traceback, a hashing thread still reading) holds no memory."""
    pool = BufferPool(64 * MiB)
    buf = await pool.acquire(64 * MiB)
    view = memoryview(buf)
    view[:] = os.urandom(len(view))
    proc = psutil.Process()
    held = proc.memory_info().rss
    pool.release(buf, reuse=False)
    assert held - proc.memory_info().rss >= 60 * MiB
    assert len(view) == 64 * MiB  # still there to read, as zeros


async def test_buffer_larger_than_the_budget_is_granted_when_nothing_is_out() -> None:
    pool = BufferPool(PART)
    buf = await asyncio.wait_for(pool.acquire(3 * PART), DEADLINE)
    assert len(buf) == 3 * PART


async def test_32_concurrent_uploads_never_exceed_the_budget(pools: HashPools) -> None:
    budget = 4 * PART
    pool = BufferPool(budget)
    store = MemoryStore()
    bodies = [os.urandom(5 * PART + i) for i in range(32)]
    await asyncio.wait_for(asyncio.gather(*(
        stream_to_store(Body(b), store, f"k{i}", size=len(b), limits=limits(),
                        buffers=pool, pools=pools)
        for i, b in enumerate(bodies)
    )), DEADLINE)
    assert pool.peak <= budget


async def test_32_concurrent_uploads_within_a_small_budget_keep_their_bytes(
    pools: HashPools,
) -> None:
    pool = BufferPool(3 * PART)
    store = MemoryStore()
    bodies = [os.urandom(4 * PART + 7 * i) for i in range(32)]
    stored = await asyncio.wait_for(asyncio.gather(*(
        stream_to_store(Body(b), store, f"k{i}", size=len(b), limits=limits(),
                        buffers=pool, pools=pools)
        for i, b in enumerate(bodies)
    )), DEADLINE)
    assert [s.digests.sha256 for s in stored] == [hashlib.sha256(b).hexdigest() for b in bodies]
    assert [store.objects[f"k{i}"][0] for i in range(32)] == bodies
    assert store.uploads == {}


async def test_all_buffers_are_returned_after_32_uploads(pools: HashPools) -> None:
    pool = BufferPool(3 * PART)
    store = MemoryStore()
    await asyncio.wait_for(asyncio.gather(*(
        stream_to_store(Body(os.urandom(3 * PART + 1)), store, f"k{i}", size=3 * PART + 1,
                        limits=limits(), buffers=pool, pools=pools)
        for i in range(32)
    )), DEADLINE)
    assert pool.used == 0


async def test_upload_waiting_for_buffers_stops_reading_its_body(pools: HashPools) -> None:
    # One upload holds the whole budget: two parts in flight (held at the gate), one filled.
    pool = BufferPool(3 * PART)
    store = GatedStore()
    first = Body(os.urandom(10 * PART))
    second = Body(os.urandom(10 * PART))
    a = asyncio.create_task(stream_to_store(first, store, "a", size=10 * PART, limits=limits(),
                                            buffers=pool, pools=pools))
    await until(lambda: store.arrived == 2 and pool.used == 3 * PART, "first upload is stuck")
    b = asyncio.create_task(stream_to_store(second, store, "b", size=10 * PART, limits=limits(),
                                            buffers=pool, pools=pools))
    await until(lambda: pool.contended, "the second upload waits for room")
    read_while_waiting = second.pos
    for _ in range(50):
        await asyncio.sleep(0)
    # It took the first bytes of its part (what had arrived) and then stopped reading.
    assert second.pos == read_while_waiting <= STAGE_BYTES
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(a, b), DEADLINE)


async def test_upload_held_back_by_the_budget_completes_once_room_is_made(
    pools: HashPools,
) -> None:
    pool = BufferPool(3 * PART)
    store = GatedStore()
    data = os.urandom(10 * PART)
    a = asyncio.create_task(stream_to_store(Body(os.urandom(10 * PART)), store, "a",
                                            size=10 * PART, limits=limits(), buffers=pool,
                                            pools=pools))
    await until(lambda: store.arrived == 2, "first upload is stuck")
    b = asyncio.create_task(stream_to_store(Body(data), store, "b", size=len(data),
                                            limits=limits(), buffers=pool, pools=pools))
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(a, b), DEADLINE)
    assert store.objects["b"][0] == data


async def test_32_concurrent_http_uploads_within_a_tight_budget_all_succeed(
    aiohttp_client, settings, world: World, s3,
) -> None:
    tight = settings.with_overrides(part_size=5 * MiB, parts_in_flight=1,
                                    buffer_budget=10 * MiB, db_pool_max=40)
    app = create_app(tight)
    client = await aiohttp_client(app)
    body = os.urandom(5 * MiB + 1)  # two parts each

    async def put(i: int) -> int:
        resp = await client.put(
            f"/api/v4/projects/{world.project_id}/packages/generic/pkg/1.0/f{i}.bin",
            data=body, headers={"PRIVATE-TOKEN": world.tokens["developer"]},
        )
        return resp.status

    statuses = await asyncio.wait_for(asyncio.gather(*(put(i) for i in range(32))), 240)
    assert statuses == [201] * 32
    assert app[keys.buffers].peak <= 10 * MiB
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 32
    assert s3.list_multipart_uploads(Bucket=tight.s3_bucket).get("Uploads", []) == []


class ReorderingSink(MemorySink):
    """Part 1 of "zeros" is stored only once a part of "other" has arrived."""

    async def write_part(self, number: int, data: memoryview, crc32: int) -> None:
        store: ReorderingStore = self._store  # type: ignore[assignment]
        if self.key == "zeros" and number == 1:
            await store.other_arrived.wait()
        if self.key == "other":
            store.other_arrived.set()
        await super().write_part(number, data, crc32)


class ReorderingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.other_arrived = asyncio.Event()

    async def open_sink(self, key: str) -> ReorderingSink:
        sink = ReorderingSink(self, key)
        self.uploads[sink.upload_id] = key
        return sink


async def test_upload_whose_parts_are_equal_hands_back_only_its_own_buffers(
    pools: HashPools,
) -> None:
    # A file of zeros has equal parts: buffers must be told apart by identity, not content,
    # or a part finishing early hands back another part's buffer to the next upload.
    pool = BufferPool(3 * PART)
    store = ReorderingStore()
    zeros, other = bytes(3 * PART), os.urandom(2 * PART)
    first = asyncio.create_task(stream_to_store(Body(zeros), store, "zeros", size=len(zeros),
                                                limits=limits(), buffers=pool, pools=pools))
    await until(lambda: pool.used == 3 * PART, "the first upload holds the budget")
    second = asyncio.create_task(stream_to_store(Body(other), store, "other", size=len(other),
                                                 limits=limits(), buffers=pool, pools=pools))
    await asyncio.wait_for(asyncio.gather(first, second), DEADLINE)
    assert store.objects["zeros"][0] == zeros
    assert store.objects["other"][0] == other
    assert pool.used == 0


# --- the budget under slow clients --------------------------------------------------------------


async def test_waiting_for_room_ends_with_503_and_retry_after_at_the_deadline() -> None:
    pool = BufferPool(PART, wait_timeout=0.2)
    await pool.acquire(PART)
    with pytest.raises(BufferBusy) as refused:
        await asyncio.wait_for(pool.acquire(PART), DEADLINE)
    assert refused.value.status == 503
    assert refused.value.body() == {
        "message": "503 Service Unavailable - too many uploads in progress, please retry"
    }
    assert refused.value.headers == {"Retry-After": "5"}
    assert not pool.contended


async def test_body_declared_smaller_than_a_part_takes_a_buffer_of_its_own_size(
    pools: HashPools,
) -> None:
    pool = BufferPool(64 * PART)
    data = os.urandom(300 * 1024 + 5)  # two pieces: copied into a buffer of exactly this size
    await asyncio.wait_for(stream_to_store(Body(data), MemoryStore(), "k", size=len(data),
                                           limits=limits(), buffers=pool, pools=pools), DEADLINE)
    assert pool.peak == len(data)


async def test_five_byte_body_is_sent_as_received_without_a_buffer(pools: HashPools) -> None:
    pool = BufferPool(64 * PART)
    store = MemoryStore()
    await asyncio.wait_for(stream_to_store(Body(b"hello"), store, "k", size=5, limits=limits(),
                                           buffers=pool, pools=pools), DEADLINE)
    assert store.objects["k"][0] == b"hello"
    assert pool.peak == 5 and pool.used == 0


class Trickle:
    """A body that sends ``first`` at once, then a byte now and then, for ever."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def readany(self) -> bytes:
        if self.first:
            out, self.first = self.first, b""
            return out
        await asyncio.sleep(0.2)
        return b"x"


async def test_slow_uploads_holding_the_budget_are_turned_away_for_a_normal_one(
    pools: HashPools,
) -> None:
    pool = BufferPool(4 * PART)
    store = MemoryStore()
    slow = [asyncio.create_task(stream_to_store(
        Trickle(os.urandom(PART // 2)), store, f"slow{i}", size=100 * PART, limits=limits(),
        buffers=pool, pools=pools)) for i in range(8)]
    await until(lambda: pool.used >= 4 * PART - PART // 2, "slow uploads hold the budget")
    data = os.urandom(3 * PART)
    await asyncio.wait_for(stream_to_store(Body(data), store, "normal", size=len(data),
                                           limits=limits(), buffers=pool, pools=pools), DEADLINE)
    assert store.objects["normal"][0] == data
    turned_away = [t for t in slow if t.done() and isinstance(t.exception(), BufferBusy)]
    assert turned_away
    for t in slow:
        t.cancel()
    await asyncio.gather(*slow, return_exceptions=True)
    assert pool.used == 0


async def test_slow_upload_holding_its_whole_part_gets_its_buffer_while_others_wait() -> None:
    pool = BufferPool(2 * PART)
    await pool.acquire(PART)
    await pool.reserve(PART, slow=True)  # a slow upload's part, all of it received
    fast = asyncio.create_task(pool.acquire(PART))
    await until(lambda: pool.contended, "a normal upload waits for room")
    buf = await asyncio.wait_for(pool.acquire(PART, credit=PART, slow=True), DEADLINE)
    assert len(buf) == PART and pool.used == 2 * PART
    fast.cancel()
    await asyncio.gather(fast, return_exceptions=True)


def test_fill_that_sent_a_burst_then_stopped_is_slow_a_stall_window_later() -> None:
    pool = BufferPool(4 * PART)
    stalled, steady = pool.start_fill(), pool.start_fill()
    for fill, sent_lately in ((stalled, 0), (steady, 64 * 1024)):
        # Most of the part at once 3 s ago (a high rate over the whole fill), then: nothing /
        # 64 KiB in the last window.
        fill.started -= 3.0
        fill.received = PART - 1
        fill.judged_at -= STALL_WINDOW * 1.5
        fill.judged_bytes = fill.received - sent_lately
    assert pool.too_slow(stalled)
    assert not pool.too_slow(steady)


async def test_fill_of_an_upload_found_slow_gives_way_only_to_one_that_is_not() -> None:
    pool = BufferPool(2 * PART)
    await pool.acquire(PART)
    await pool.acquire(PART, slow=True)
    fill = pool.start_fill(slow=True)
    other_slow = asyncio.create_task(pool.acquire(PART, slow=True))
    await until(lambda: pool.contended, "a slow upload waits for room")
    assert not pool.too_slow(fill)
    normal = asyncio.create_task(pool.acquire(PART))
    await until(lambda: pool.others_waiting, "a normal upload waits for room")
    assert pool.too_slow(fill)
    for task in (other_slow, normal):
        task.cancel()
    await asyncio.gather(other_slow, normal, return_exceptions=True)


class HangsUp(Body):
    """Sends ``data`` in pieces, then the connection breaks."""

    async def readany(self) -> bytes:
        out = await super().readany()
        if not out:
            raise ConnectionResetError("gone")
        return out


@pytest.mark.parametrize("sent", [100, PART + PART // 2, 3 * PART])
async def test_client_hanging_up_mid_part_gives_back_every_byte(
    pools: HashPools, sent: int
) -> None:
    pool = BufferPool(8 * PART)
    with pytest.raises(ClientGone):
        await asyncio.wait_for(stream_to_store(
            HangsUp(os.urandom(sent)), MemoryStore(), "k", size=10 * PART, limits=limits(),
            buffers=pool, pools=pools), DEADLINE)
    assert pool.used == 0
