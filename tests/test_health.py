"""Liveness and readiness, as a load balancer asks for them."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest

from gateway.app import create_app
from gateway.db.migrate import latest_version, migrate
from gateway.db.pool import Database
from gateway.devtools.processes import free_port
from gateway.readiness import Readiness
from gateway.storage.memory import MemoryStore


async def test_health_answers_while_the_process_runs(client) -> None:
    resp = await client.get("/-/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readiness_answers_ok_while_postgres_answers(client) -> None:
    resp = await client.get("/-/readiness")
    assert resp.status == 200


async def test_readiness_is_a_json_503_without_postgres(aiohttp_client, settings) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    client = await aiohttp_client(create_app(settings.with_overrides(
        database_url=nowhere, db_acquire_timeout=2
    )))
    resp = await client.get("/-/readiness")
    assert resp.status == 503
    assert await resp.json() == {"message": "503 Service Unavailable - the database is unavailable"}


async def test_readiness_is_a_json_503_while_s3_cannot_be_reached(aiohttp_client, settings) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_max_attempts=1,
        s3_connect_timeout=1,
    )))
    resp = await client.get("/-/readiness")
    assert resp.status == 503
    assert await resp.json() == {
        "message": "503 Service Unavailable - object storage is unavailable"
    }


async def test_readiness_is_a_json_503_when_the_bucket_is_missing(aiohttp_client, settings) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(s3_bucket="no-such-bucket")))
    resp = await client.get("/-/readiness")
    assert resp.status == 503
    assert await resp.json() == {
        "message": "503 Service Unavailable - the bucket does not exist"
    }


async def test_readiness_waits_for_the_migrations_of_this_release(
    aiohttp_client, settings, database_url
) -> None:
    admin = await asyncpg.connect(database_url)
    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        unmigrated = database_url.rsplit("/", 1)[0] + f"/{name}"
        client = await aiohttp_client(create_app(settings.with_overrides(database_url=unmigrated)))
        resp = await client.get("/-/readiness")
        assert resp.status == 503
        assert await resp.json() == {"message": "503 Service Unavailable - the database schema "
                                     f"is not migrated, this release needs {latest_version()}: "
                                     "run gateway migrate"}
        await migrate(unmigrated)
        await asyncio.sleep(1.1)  # past the cached answer
        assert (await client.get("/-/readiness")).status == 200
        await client.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    async def check(self) -> None:
        self.checks += 1
        await asyncio.sleep(0.05)


async def test_many_probes_at_once_cost_one_check(settings) -> None:
    store = CountingStore()
    async with Database.open(settings) as db:
        ready = Readiness(db, store, schema_needed=latest_version(), cache_seconds=60)
        await asyncio.gather(*(ready.check() for _ in range(50)))
        await ready.check()
        assert store.checks == 1
        uncached = Readiness(db, store, schema_needed=latest_version(), cache_seconds=0)
        for _ in range(3):
            await uncached.check()
        assert store.checks == 4


async def test_health_does_not_look_at_postgres_or_s3(aiohttp_client, settings) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none",
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
    )))
    resp = await client.get("/-/health")
    assert resp.status == 200


async def test_a_503_leaves_a_warning_naming_its_cause(
    aiohttp_client, settings, caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    client = await aiohttp_client(create_app(settings.with_overrides(
        database_url=nowhere, db_acquire_timeout=2
    )))
    caplog.set_level(logging.WARNING, logger="gateway.errors")
    resp = await client.put("/api/v4/projects/1/packages/generic/pkg/1.0/a.bin", data=b"x",
                            headers={"PRIVATE-TOKEN": "glpat-not-a-real-token-at-all"})
    assert resp.status == 503
    [line] = [r.getMessage() for r in caplog.records if r.name == "gateway.errors"]
    assert line.startswith("answered 503: DatabaseUnavailable: 503 Service Unavailable - the "
                           "database is unavailable <- ")
    assert "Connect" in line  # the refused connection underneath
