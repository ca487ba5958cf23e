"""One contract for every ObjectStore (gateway/storage/__init__.py), run against S3Store on moto
and MemoryStore. Each test leaves the store as it found it: a leftover object or open multipart
upload fails the test."""

from __future__ import annotations

import os
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from botocore.exceptions import ConnectionClosedError

from gateway.config import MiB, Settings
from gateway.storage import ObjectNotFound, ObjectStore
from gateway.storage.memory import MemoryStore
from gateway.storage.s3 import S3Store

# S3 refuses parts under 5 MiB except the last.
PART = 5 * MiB


@pytest.fixture(params=["memory", "s3"])
def s3_settings(request: pytest.FixtureRequest) -> Settings | None:
    """None for MemoryStore; the test's bucket on moto for S3Store."""
    return None if request.param == "memory" else request.getfixturevalue("settings")


async def assert_left_clean(store: ObjectStore) -> None:
    assert await store.list_keys() == [], "the test left objects behind"
    assert await store.list_open_uploads() == [], "the test left an open multipart upload"


@pytest.fixture
async def store(s3_settings: Settings | None) -> AsyncIterator[ObjectStore]:
    if s3_settings is None:
        memory = MemoryStore()
        yield memory
        await assert_left_clean(memory)
        return
    async with S3Store.open(s3_settings) as s3:
        yield s3
        await assert_left_clean(s3)


def view(data: bytes) -> memoryview:
    return memoryview(bytearray(data))


async def read_all(store: ObjectStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(key)])


async def put(store: ObjectStore, key: str, data: bytes) -> None:
    await store.put_object(key, view(data), zlib.crc32(data))


async def test_put_object_is_readable_with_its_size(store: ObjectStore) -> None:
    data = os.urandom(1000)
    await put(store, "a", data)
    assert (await store.stat("a")).size == 1000
    assert await read_all(store, "a") == data
    await store.delete("a")


async def test_empty_object_is_stored(store: ObjectStore) -> None:
    await put(store, "empty", b"")
    assert (await store.stat("empty")).size == 0
    await store.delete("empty")


async def test_delete_removes_the_object(store: ObjectStore) -> None:
    await put(store, "a", b"x")
    await store.delete("a")
    with pytest.raises(ObjectNotFound):
        await store.stat("a")


async def test_delete_of_a_missing_object_is_not_an_error(store: ObjectStore) -> None:
    await store.delete("never-there")


async def test_stat_of_a_missing_object_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await store.stat("missing")


async def test_read_of_a_missing_object_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await read_all(store, "missing")


async def test_read_of_megabytes_gives_every_byte_and_a_range_exactly_its_bytes(
    store: ObjectStore,
) -> None:
    # Larger than what a connection receives at once (S3Store yields those pieces as they come).
    data = os.urandom(3 * MiB + 7)
    await put(store, "big", data)
    assert await read_all(store, "big") == data
    first, last = 1000, 3 * MiB + 1
    got = b"".join([chunk async for chunk in store.read("big", (first, last))])
    assert got == data[first : last + 1]
    await store.delete("big")


async def test_committed_parts_form_the_object_in_part_number_order(store: ObjectStore) -> None:
    first, last = os.urandom(PART), os.urandom(1234)
    sink = await store.open_sink("big")
    # Parts may arrive in any order.
    await sink.write_part(2, view(last), zlib.crc32(last))
    await sink.write_part(1, view(first), zlib.crc32(first))
    await sink.commit()
    assert await read_all(store, "big") == first + last
    assert (await store.stat("big")).size == PART + 1234
    await store.delete("big")


async def test_nothing_is_visible_before_commit(store: ObjectStore) -> None:
    data = os.urandom(100)
    sink = await store.open_sink("pending")
    await sink.write_part(1, view(data), zlib.crc32(data))
    assert await store.list_keys() == []
    with pytest.raises(ObjectNotFound):
        await store.stat("pending")
    await sink.abort()


async def test_open_upload_is_listed_until_it_ends(store: ObjectStore) -> None:
    sink = await store.open_sink("k")
    assert [(u.key, u.upload_id) for u in await store.list_open_uploads()] == [
        ("k", sink.upload_id)
    ]
    await sink.abort()
    assert await store.list_open_uploads() == []


async def test_abort_leaves_no_object_and_no_open_upload(store: ObjectStore) -> None:
    data = os.urandom(PART)
    sink = await store.open_sink("gone")
    await sink.write_part(1, view(data), zlib.crc32(data))
    await sink.abort()
    assert await store.list_keys() == []
    assert await store.list_open_uploads() == []


async def test_abort_twice_is_safe(store: ObjectStore) -> None:
    sink = await store.open_sink("twice")
    await sink.abort()
    await sink.abort()


async def test_abort_upload_by_id_ends_an_upload_of_another_process(store: ObjectStore) -> None:
    sink = await store.open_sink("orphan")
    await store.abort_upload("orphan", sink.upload_id)
    assert await store.list_open_uploads() == []


async def test_an_upload_exists_until_it_is_aborted(store: ObjectStore) -> None:
    sink = await store.open_sink("probed")
    assert await store.upload_exists("probed", sink.upload_id)
    await sink.abort()
    assert not await store.upload_exists("probed", sink.upload_id)


async def test_an_upload_exists_until_it_is_completed(store: ObjectStore) -> None:
    sink = await store.open_sink("probed")
    await sink.write_part(1, view(b"x"), zlib.crc32(b"x"))
    await sink.commit()
    assert not await store.upload_exists("probed", sink.upload_id)
    await store.delete("probed")


async def test_abort_upload_of_an_unknown_upload_is_not_an_error(store: ObjectStore) -> None:
    sink = await store.open_sink("known")
    await sink.abort()
    await store.abort_upload("known", sink.upload_id)


async def test_part_buffer_may_be_reused_once_write_part_returns(store: ObjectStore) -> None:
    buf = bytearray(os.urandom(PART))
    expected = bytes(buf)
    sink = await store.open_sink("reuse")
    await sink.write_part(1, memoryview(buf), zlib.crc32(buf))
    buf[:] = b"\0" * PART
    await sink.commit()
    assert await read_all(store, "reuse") == expected
    await store.delete("reuse")


async def test_download_url_is_none_or_serves_the_bytes(store: ObjectStore) -> None:
    data = os.urandom(300)
    await put(store, "dl", data)
    url = await store.download_url("dl", 'attachment; filename="dl"', 60)
    if url is not None:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == data
    await store.delete("dl")


async def test_s3_part_sent_again_after_a_dropped_connection_keeps_its_bytes(
    settings: Settings,
) -> None:
    attempts = []

    def drop_first(request, **_: object) -> None:
        attempts.append(request.url)
        if len(attempts) == 1:
            raise ConnectionClosedError(endpoint_url=request.url)

    async with S3Store.open(settings) as s3:
        s3.client.meta.events.register("before-send.s3.UploadPart", drop_first)
        data = os.urandom(PART)
        sink = await s3.open_sink("retried")
        await sink.write_part(1, view(data), zlib.crc32(data))
        await sink.commit()
        assert len(attempts) == 2
        assert await read_all(s3, "retried") == data
        await s3.delete("retried")
