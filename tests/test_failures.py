"""Real faults on loopback: nothing lost, nothing half-written, nothing left behind.

Each test injects one fault (a client hanging up, a killed gateway, PostgreSQL stopped, S3
frozen or failing, a malformed body, a SIGTERM) and ends with ``assert_consistent``: every file
answered 201 is there with its recorded sha256, no other file or object is visible, and no
multipart or pending upload is left once the stale window has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from gateway.app import create_app
from gateway.config import MiB, Settings
from gateway.db import packages as q
from gateway.db.migrate import migrate
from gateway.db.pool import Database
from gateway.devtools.postgres import PostgresCluster
from gateway.devtools.s3servers import MotoServer
from gateway.storage.s3 import S3Store
from gateway.sweeper import sweep_stale_uploads
from tests.conftest import (
    ROOT,
    World,
    build_world,
    empty_database,
    gateway_env,
    s3_client,
    start_gateway,
)
from tests.faults.checks import assert_consistent, store_state, wait_for
from tests.faults.proxy import FaultyS3Proxy
from tests.faults.rawhttp import RawUpload, put_head
from tests.faults.throttle import ThrottledProxy

STALE = 2  # GATEWAY_STALE_UPLOAD_SECONDS in these tests
# Long enough for the sweeper to have run after a stale window, with room for a slow machine.
SETTLE = 30.0
FAST = {
    "stale_upload_seconds": STALE,
    "part_size": 5 * MiB,
    "body_read_timeout": 3.0,
    "s3_connect_timeout": 1.0,
    "s3_read_timeout": 2.0,
    "s3_max_attempts": 2,
    "s3_request_deadline": 3.0,
    "db_acquire_timeout": 2.0,
    "db_statement_timeout": 5.0,
}
BIG = 12 * MiB  # three parts of 5 MiB (a multipart upload)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path(world: World, file_name: str = "file.bin", version: str = "1.0") -> str:
    return f"/api/v4/projects/{world.project_id}/packages/generic/pkg/{version}/{file_name}"


def dev(world: World) -> dict[str, str]:
    return {"PRIVATE-TOKEN": world.tokens["developer"]}


async def gated(body: bytes, first: int, gate: asyncio.Event) -> AsyncIterator[bytes]:
    """A chunked body: ``first`` bytes, then the rest once ``gate`` is set."""
    yield body[:first]
    await gate.wait()
    for i in range(first, len(body), MiB):
        yield body[i : i + MiB]


async def multipart_started(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(
        "SELECT count(*) FROM pending_uploads WHERE upload_id IS NOT NULL"
    ))


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.with_overrides(**FAST)


@pytest.fixture
async def gw(aiohttp_client, fast: Settings, world: World):
    """The gateway in this process with short stale windows and timeouts."""
    return await aiohttp_client(create_app(fast))


# --- clients that misbehave -------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.99])
async def test_client_hanging_up_part_way_leaves_nothing(
    gw, world: World, s3, fast: Settings, fraction: float
) -> None:
    body = os.urandom(BIG)
    raw = await RawUpload(gw.server.host, gw.server.port).connect()
    await raw.send(put_head(path(world), world.tokens["developer"], length=len(body)))
    await raw.send(body[: int(len(body) * fraction)])
    if fraction:
        await wait_for(lambda: multipart_started(world.conn), "a multipart upload started")
    await raw.abort()
    await assert_consistent(world.conn, s3, fast.s3_bucket, [], within=SETTLE)


async def test_body_shorter_than_its_content_length_is_cut_off_with_408(
    gw, world: World, s3, fast: Settings
) -> None:
    body = os.urandom(BIG)
    raw = await RawUpload(gw.server.host, gw.server.port).connect()
    await raw.send(put_head(path(world), world.tokens["developer"], length=len(body) + 1))
    await raw.send(body)  # one byte short, and the client waits
    answer = await raw.answer()
    assert answer.status == 408
    assert answer.json() == {"message": "408 Request Timeout - the request body stopped arriving"}
    assert await raw.closed_by_peer()
    await assert_consistent(world.conn, s3, fast.s3_bucket, [])


async def test_body_longer_than_its_content_length_is_refused_with_400(
    gw, world: World, s3, fast: Settings
) -> None:
    body = os.urandom(BIG)
    raw = await RawUpload(gw.server.host, gw.server.port).connect()
    await raw.send(put_head(path(world), world.tokens["developer"], length=len(body) - 100))
    await raw.send(body)
    answer = await raw.answer()
    assert answer.status == 400
    assert answer.json() == {
        "message": "400 Bad request - the body is longer than its Content-Length"
    }
    assert answer.headers["connection"] == "close"
    await assert_consistent(world.conn, s3, fast.s3_bucket, [])


async def test_broken_chunked_encoding_mid_body_is_refused_with_400(
    gw, world: World, s3, fast: Settings
) -> None:
    raw = await RawUpload(gw.server.host, gw.server.port).connect()
    await raw.send(put_head(path(world), world.tokens["developer"], chunked=True))
    first = os.urandom(6 * MiB)
    await raw.send(b"%x\r\n" % len(first) + first + b"\r\n")
    await wait_for(lambda: multipart_started(world.conn), "a multipart upload started")
    await raw.send(b"zz-not-a-chunk-size\r\n")
    answer = await raw.answer()
    assert answer.status == 400
    assert answer.json() == {"message": "400 Bad request - broken chunked transfer encoding"}
    await assert_consistent(world.conn, s3, fast.s3_bucket, [])


async def test_client_sending_one_byte_per_second_outlives_the_stale_window(
    gw, world: World, s3, fast: Settings
) -> None:
    body = b"slow-body"  # takes longer than the stale window: only the heartbeat keeps it
    raw = await RawUpload(gw.server.host, gw.server.port).connect()
    await raw.send(put_head(path(world), world.tokens["developer"], length=len(body)))
    for i in range(len(body)):
        await raw.send(body[i : i + 1])
        await asyncio.sleep(1)
    answer = await raw.answer()
    assert answer.status == 201
    await assert_consistent(world.conn, s3, fast.s3_bucket, [sha(body)])


async def test_oversized_headers_are_refused_before_anything_is_stored(
    gw, world: World, s3, fast: Settings
) -> None:
    raw = await RawUpload(gw.server.host, gw.server.port).connect()
    head = put_head(path(world), world.tokens["developer"], length=5,
                    extra={"X-Padding": "p" * 20_000})
    await raw.send(head + b"hello")
    answer = await raw.answer()
    assert answer.status == 400
    await assert_consistent(world.conn, s3, fast.s3_bucket, [])


async def test_concurrent_uploads_of_one_file_name_all_keep_their_bytes(
    gw, world: World, s3, fast: Settings
) -> None:
    bodies = [os.urandom(6 * MiB + i) for i in range(6)]
    answers = await asyncio.gather(
        *(gw.put(path(world), data=b, headers=dev(world)) for b in bodies)
    )
    assert [a.status for a in answers] == [201] * len(bodies)
    assert await world.conn.fetchval("SELECT count(*) FROM packages") == 1
    await assert_consistent(world.conn, s3, fast.s3_bucket, [sha(b) for b in bodies])


async def test_concurrent_duplicates_when_refused_leave_exactly_one_file(
    gw, world: World, s3, fast: Settings
) -> None:
    await world.conn.execute("UPDATE namespaces SET generic_duplicates_allowed = false")
    bodies = [os.urandom(6 * MiB + i) for i in range(6)]
    answers = await asyncio.gather(
        *(gw.put(path(world), data=b, headers=dev(world)) for b in bodies)
    )
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] + [400] * (len(bodies) - 1)
    winner = next(b for b, a in zip(bodies, answers, strict=True) if a.status == 201)
    await assert_consistent(world.conn, s3, fast.s3_bucket, [sha(winner)])


# --- Expect: 100-continue, with a real curl ---------------------------------------------------


async def _curl(url: str, token: str, file: Path) -> tuple[int, int]:
    """PUT ``file`` with curl (Expect: 100-continue); returns (status, bytes curl sent)."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}",
        "-H", f"PRIVATE-TOKEN: {token}", "-H", "Expect: 100-continue",
        "--expect100-timeout", "30", "-T", str(file), url,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    status, sent = out.decode().split()
    return int(status), int(float(sent))


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_refused_upload_with_expect_continue_sends_no_body(
    gw, world: World, s3, fast: Settings, tmp_path: Path
) -> None:
    file = tmp_path / "big.bin"
    file.write_bytes(os.urandom(BIG))
    url = str(gw.make_url(path(world)))
    status, sent = await _curl(url, "glpat-not-a-token", file)
    assert (status, sent) == (401, 0)
    await assert_consistent(world.conn, s3, fast.s3_bucket, [])


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_accepted_upload_with_expect_continue_is_stored(
    gw, world: World, s3, fast: Settings, tmp_path: Path
) -> None:
    file = tmp_path / "big.bin"
    file.write_bytes(os.urandom(BIG))
    status, sent = await _curl(str(gw.make_url(path(world))), world.tokens["developer"], file)
    assert (status, sent) == (201, BIG)
    await assert_consistent(world.conn, s3, fast.s3_bucket, [sha(file.read_bytes())])


async def test_upload_swept_while_its_commit_waits_is_refused_with_503(
    gw, world: World, s3, fast: Settings
) -> None:
    lock = await asyncpg.connect(fast.database_url)
    try:
        # Hold the version's lock: the commit waits while the row's heartbeat goes stale.
        await lock.execute(
            "SELECT pg_advisory_lock("
            "hashtextextended($1::bigint::text || '/' || $2 || '/' || $3, 7))",
            world.project_id, "pkg", "1.0",
        )
        upload = asyncio.create_task(gw.put(path(world), data=os.urandom(BIG), headers=dev(world)))
        await wait_for(
            lambda: lock.fetchval(
                "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"),
            "the commit waiting for the version lock",
        )
        await wait_for(
            lambda: world.conn.fetchval("SELECT count(*) = 0 FROM pending_uploads"),
            "the sweeper taking the stale upload", timeout=SETTLE,
        )
    finally:
        await lock.close()
    resp = await asyncio.wait_for(upload, 60)
    assert resp.status == 503
    assert await resp.json() == {
        "message": "503 Service Unavailable - the upload was interrupted, please retry"
    }
    await assert_consistent(world.conn, s3, fast.s3_bucket, [])


# --- the gateway process: SIGKILL, SIGTERM ----------------------------------------------------


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def _put(url: str, world: World, body: bytes) -> int:
    async with aiohttp.ClientSession() as session, session.put(
        url, data=body, headers=dev(world), timeout=aiohttp.ClientTimeout(total=60)
    ) as resp:
        return resp.status


async def test_gateway_killed_mid_upload_leaves_nothing_once_restarted(
    settings: Settings, world: World, s3, tmp_path: Path
) -> None:
    env = {"GATEWAY_STALE_UPLOAD_SECONDS": str(STALE), "GATEWAY_PART_SIZE": "5MiB"}
    first = start_gateway(settings, tmp_path, **env)
    second = None
    try:
        kept = os.urandom(1000)
        assert await _put(first.url + path(world, "kept.bin"), world, kept) == 201
        raw = await RawUpload(*_host_port(first.url)).connect()
        body = os.urandom(BIG)
        await raw.send(put_head(path(world), world.tokens["developer"], length=len(body)))
        await raw.send(body[: 8 * MiB])
        await wait_for(lambda: multipart_started(world.conn), "a multipart upload started")
        first.proc.kill()
        first.proc.wait(10)
        raw.close()
        assert store_state(s3, settings.s3_bucket)[1] != [], "the crash left an open upload"
        second = start_gateway(settings, tmp_path, **env)
        await assert_consistent(world.conn, s3, settings.s3_bucket, [sha(kept)], within=SETTLE)
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_sigterm_lets_uploads_finish_then_aborts_the_rest_and_exits(
    settings: Settings, world: World, s3, tmp_path: Path
) -> None:
    gw = start_gateway(
        settings, tmp_path, GATEWAY_SHUTDOWN_TIMEOUT="3", GATEWAY_PART_SIZE="5MiB",
        GATEWAY_BODY_READ_TIMEOUT="60",
    )
    try:
        host, port = _host_port(gw.url)
        finishing, stalled = os.urandom(BIG), os.urandom(BIG)
        a = await RawUpload(host, port).connect()
        await a.send(put_head(path(world, "a.bin"), world.tokens["developer"], length=BIG))
        await a.send(finishing[:-1])
        b = await RawUpload(host, port).connect()
        await b.send(put_head(path(world, "b.bin"), world.tokens["developer"], length=BIG))
        await b.send(stalled[: 8 * MiB])  # then nothing more: still running at the deadline
        await wait_for(
            lambda: world.conn.fetchval(
                "SELECT count(*) = 2 FROM pending_uploads WHERE upload_id IS NOT NULL"),
            "both uploads streaming",
        )
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)  # the signal is being handled; the first upload ends in time
        await a.send(finishing[-1:])
        assert (await a.answer()).status == 201
        assert await b.closed_by_peer()
        assert await asyncio.to_thread(gw.proc.wait, 30) == 0
        # The gateway is gone, so no sweeper helped: the abort was its own.
        await assert_consistent(world.conn, s3, settings.s3_bucket, [sha(finishing)], within=5)
    finally:
        gw.stop()


# --- PostgreSQL stopped -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A PostgreSQL these tests may stop (never the one the rest of the suite shares)."""
    cluster = PostgresCluster(tmp_path_factory.mktemp("own-pg") / "data", fast=True)
    with cluster:
        asyncio.run(migrate(cluster.create_database("faults")))
        yield cluster


@pytest.fixture
async def pg_world(own_postgres: PostgresCluster) -> AsyncIterator[World]:
    own_postgres.start()  # a no-op unless a previous test left it stopped
    conn = await asyncpg.connect(own_postgres.database_url("faults"))
    await empty_database(conn)
    w = await build_world(conn)
    yield w
    with contextlib.suppress(Exception):
        await w.conn.close()


async def _reconnect(world: World, cluster: PostgresCluster) -> None:
    with contextlib.suppress(Exception):
        await world.conn.close()
    world.conn = await asyncpg.connect(cluster.database_url("faults"))


async def test_postgres_stopped_mid_stream_answers_503_and_service_resumes(
    aiohttp_client, own_postgres: PostgresCluster, pg_world: World, fast: Settings, s3
) -> None:
    settings = fast.with_overrides(database_url=own_postgres.database_url("faults"))
    client = await aiohttp_client(create_app(settings))
    body, gate = os.urandom(BIG), asyncio.Event()
    upload = asyncio.create_task(
        client.put(path(pg_world), data=gated(body, 6 * MiB, gate), headers=dev(pg_world))
    )
    await wait_for(lambda: multipart_started(pg_world.conn), "a multipart upload started")
    await pg_world.conn.close()
    own_postgres.stop()
    gate.set()
    resp = await asyncio.wait_for(upload, 60)
    assert resp.status == 503
    assert await resp.json() == {
        "message": "503 Service Unavailable - the database is unavailable"
    }
    own_postgres.start()
    await _reconnect(pg_world, own_postgres)
    after = b"after the outage"
    ok = await client.put(path(pg_world, "after.bin"), data=after, headers=dev(pg_world))
    assert ok.status == 201  # same app, no restart
    await assert_consistent(pg_world.conn, s3, settings.s3_bucket, [sha(after)], within=SETTLE)


async def test_postgres_stopped_during_the_commit_answers_503_and_leaves_nothing(
    aiohttp_client, own_postgres: PostgresCluster, pg_world: World, fast: Settings, s3
) -> None:
    settings = fast.with_overrides(database_url=own_postgres.database_url("faults"))
    client = await aiohttp_client(create_app(settings))
    # Hold the version's lock so the commit is caught inside its transaction.
    await pg_world.conn.execute(
        "SELECT pg_advisory_lock(hashtextextended($1::bigint::text || '/' || $2 || '/' || $3, 7))",
        pg_world.project_id, "pkg", "1.0",
    )
    upload = asyncio.create_task(
        client.put(path(pg_world), data=os.urandom(BIG), headers=dev(pg_world))
    )
    await wait_for(
        lambda: pg_world.conn.fetchval(
            "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"),
        "the commit waiting for the version lock",
    )
    # Immediate, with the lock holder still connected: every backend exits at once, so the
    # waiting commit cannot slip through (closing the holder first would release the lock, and
    # the commit could finish as a 201 before the stop).
    own_postgres.stop("immediate")
    pg_world.conn.terminate()
    resp = await asyncio.wait_for(upload, 60)
    assert resp.status == 503
    own_postgres.start()
    await _reconnect(pg_world, own_postgres)
    await assert_consistent(pg_world.conn, s3, settings.s3_bucket, [], within=SETTLE)


# --- S3 frozen or failing ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_moto() -> Iterator[MotoServer]:
    """An S3 server these tests may freeze (never the one the rest of the suite shares)."""
    with MotoServer() as server:
        yield server


async def test_s3_frozen_mid_upload_answers_503_and_nothing_is_left_after_it_thaws(
    aiohttp_client, own_moto: MotoServer, fast: Settings, world: World
) -> None:
    s3 = s3_client(own_moto.endpoint_url)
    s3.create_bucket(Bucket=fast.s3_bucket)
    settings = fast.with_overrides(s3_endpoint_url=own_moto.endpoint_url)
    client = await aiohttp_client(create_app(settings))
    body, gate = os.urandom(BIG), asyncio.Event()
    upload = asyncio.create_task(
        client.put(path(world), data=gated(body, 6 * MiB, gate), headers=dev(world))
    )
    await wait_for(lambda: multipart_started(world.conn), "a multipart upload started")
    own_moto.pause()
    try:
        gate.set()
        resp = await asyncio.wait_for(upload, 60)
    finally:
        own_moto.resume()
    assert resp.status == 503
    assert await resp.json() == {
        "message": "503 Service Unavailable - object storage is unavailable"
    }
    after = b"after the thaw"
    ok = await client.put(path(world, "after.bin"), data=after, headers=dev(world))
    assert ok.status == 201  # same app, no restart
    await assert_consistent(world.conn, s3, settings.s3_bucket, [sha(after)], within=SETTLE)


# What the README promises a client when S3 freezes, at default settings, and the margin a busy
# test machine may need on top: a bound on behaviour, not a performance figure.
FROZEN_S3_BOUND = 60.0
MARGIN = 30.0


async def test_s3_frozen_at_default_settings_answers_503_within_the_bound_and_leaves_nothing(
    aiohttp_client, own_moto: MotoServer, settings: Settings, world: World
) -> None:
    defaults = Settings()
    s3 = s3_client(own_moto.endpoint_url)
    s3.create_bucket(Bucket=settings.s3_bucket)
    # Default S3 waits; only the stale window is short, so the sweeper finishes soon after.
    cfg = settings.with_overrides(s3_endpoint_url=own_moto.endpoint_url, stale_upload_seconds=STALE)
    for name in ("s3_connect_timeout", "s3_read_timeout", "s3_max_attempts",
                 "s3_request_deadline", "part_size"):
        assert getattr(cfg, name) == getattr(defaults, name)
    client = await aiohttp_client(create_app(cfg))
    own_moto.pause()
    try:
        resp = await asyncio.wait_for(
            client.put(path(world), data=os.urandom(MiB), headers=dev(world)),
            FROZEN_S3_BOUND + MARGIN,
        )
        assert resp.status == 503
        assert await resp.json() == {
            "message": "503 Service Unavailable - object storage is unavailable"
        }
    finally:
        own_moto.resume()
    # The PutObject may still be carried out once S3 thaws: the sweeper removes it.
    await assert_consistent(world.conn, s3, cfg.s3_bucket, [], within=SETTLE)


async def test_slow_s3_still_finishes_parts_that_take_longer_than_the_deadline(
    aiohttp_client, settings: Settings, world: World, s3, s3_endpoint: str
) -> None:
    # 16 MiB parts at 2 MiB/s take 8 s each, but bytes keep moving: a deadline of 5 s without
    # progress never fires.
    async with ThrottledProxy(s3_endpoint, bytes_per_second=2 * MiB) as proxy:
        cfg = settings.with_overrides(s3_endpoint_url=proxy.endpoint_url, s3_request_deadline=5.0,
                                      part_size=16 * MiB, parts_in_flight=1)
        client = await aiohttp_client(create_app(cfg))
        body = os.urandom(20 * MiB)
        resp = await client.put(path(world), data=body, headers=dev(world))
        assert resp.status == 201
    await assert_consistent(world.conn, s3, cfg.s3_bucket, [sha(body)])


async def test_s3_failing_every_third_part_is_retried_and_every_file_is_intact(
    aiohttp_client, fast: Settings, world: World, s3, s3_endpoint: str
) -> None:
    async with FaultyS3Proxy(s3_endpoint, fail_every=3) as proxy:
        settings = fast.with_overrides(s3_endpoint_url=proxy.endpoint_url, s3_max_attempts=6)
        client = await aiohttp_client(create_app(settings))
        bodies = [os.urandom(BIG + i) for i in range(3)]
        for i, body in enumerate(bodies):
            resp = await client.put(path(world, f"f{i}.bin"), data=body, headers=dev(world))
            assert resp.status == 201
        assert proxy.failed_parts > 0
    await assert_consistent(world.conn, s3, settings.s3_bucket, [sha(b) for b in bodies])


async def test_s3_failing_every_part_answers_503_and_leaves_nothing(
    aiohttp_client, fast: Settings, world: World, s3, s3_endpoint: str
) -> None:
    async with FaultyS3Proxy(s3_endpoint, fail_every=1) as proxy:
        settings = fast.with_overrides(s3_endpoint_url=proxy.endpoint_url)
        client = await aiohttp_client(create_app(settings))
        resp = await client.put(path(world), data=os.urandom(BIG), headers=dev(world))
        assert resp.status == 503
        assert proxy.upload_parts >= 2  # the part was tried again before giving up
    await assert_consistent(world.conn, s3, settings.s3_bucket, [])


# --- the sweeper ------------------------------------------------------------------------------


async def _abandoned_upload(world: World, s3, bucket: str, key: str) -> str:
    """What a crashed gateway leaves: an open multipart upload and a pending row gone stale."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    await world.conn.execute(
        "INSERT INTO pending_uploads (object_key, upload_id, instance, heartbeat_at) "
        "VALUES ($1, $2, 'gone', now() - interval '1 hour')", key, upload_id,
    )
    return upload_id


async def _cli(settings: Settings, *args: str) -> str:
    env = gateway_env(settings, 8080)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "admin", "sweep-uploads", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    return out.decode()


async def test_sweep_uploads_dry_run_lists_and_changes_nothing(
    settings: Settings, world: World, s3
) -> None:
    await _abandoned_upload(world, s3, settings.s3_bucket, "packages/ab/abandoned")
    out = await _cli(settings, "--dry-run")
    assert "1 stale pending upload(s) would be aborted" in out
    assert "packages/ab/abandoned" in out
    assert len(store_state(s3, settings.s3_bucket)[1]) == 1
    assert await world.conn.fetchval("SELECT count(*) FROM pending_uploads") == 1


async def test_sweep_uploads_aborts_a_stale_upload_and_drops_its_row(
    settings: Settings, world: World, s3
) -> None:
    await _abandoned_upload(world, s3, settings.s3_bucket, "packages/ab/abandoned")
    out = await _cli(settings)
    assert "1 stale pending upload(s) aborted" in out
    await assert_consistent(world.conn, s3, settings.s3_bucket, [], within=0)


async def test_sweep_finds_an_upload_whose_id_was_never_recorded(
    settings: Settings, world: World, s3
) -> None:
    key = "packages/cd/unrecorded"
    await _abandoned_upload(world, s3, settings.s3_bucket, key)
    await world.conn.execute("UPDATE pending_uploads SET upload_id = NULL")
    await _cli(settings)
    await assert_consistent(world.conn, s3, settings.s3_bucket, [], within=0)


async def test_only_one_instance_sweeps_at_a_time(settings: Settings, world: World, s3) -> None:
    await _abandoned_upload(world, s3, settings.s3_bucket, "packages/ef/locked")
    # Another instance in the middle of a sweep step holds the lock for its transaction.
    async with world.conn.transaction(), Database.open(settings) as db, \
            S3Store.open(settings) as store:
        await world.conn.execute("SELECT pg_advisory_xact_lock($1)", q.SWEEP_LOCK_KEY)
        report = await sweep_stale_uploads(db, store, STALE)
    assert report.busy
    assert await world.conn.fetchval("SELECT count(*) FROM pending_uploads") == 1


async def test_sweep_leaves_a_fresh_upload_alone(settings: Settings, world: World, s3) -> None:
    await _abandoned_upload(world, s3, settings.s3_bucket, "packages/gh/fresh")
    await world.conn.execute("UPDATE pending_uploads SET heartbeat_at = now()")
    out = await _cli(settings)
    assert "0 stale pending upload(s) aborted" in out
    assert len(store_state(s3, settings.s3_bucket)[1]) == 1


# --- long variants ----------------------------------------------------------------------------


@pytest.mark.large
@pytest.mark.parametrize("fraction", [0.5, 0.99])
async def test_large_upload_cut_off_part_way_leaves_nothing(
    gw, world: World, s3, fast: Settings, fraction: float
) -> None:
    size = 1024 * MiB
    raw = await RawUpload(gw.server.host, gw.server.port).connect()
    await raw.send(put_head(path(world), world.tokens["developer"], length=size))
    block = os.urandom(8 * MiB)
    for _ in range(int(size * fraction) // len(block)):
        await raw.send(block)
    await raw.abort()
    await assert_consistent(world.conn, s3, fast.s3_bucket, [], within=SETTLE)


@pytest.mark.large
async def test_large_upload_through_failing_s3_keeps_its_digest(
    aiohttp_client, fast: Settings, world: World, s3, s3_endpoint: str
) -> None:
    block = os.urandom(8 * MiB)
    count = 128  # 1 GiB
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(block)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield block

    async with FaultyS3Proxy(s3_endpoint, fail_every=7) as proxy:
        settings = fast.with_overrides(s3_endpoint_url=proxy.endpoint_url, s3_max_attempts=6,
                                       s3_read_timeout=60.0)
        client = await aiohttp_client(create_app(settings))
        resp = await client.put(path(world), data=body(), headers=dev(world))
        assert resp.status == 201
    await assert_consistent(world.conn, s3, settings.s3_bucket, [digest.hexdigest()])
