"""Liveness and readiness, as a load balancer asks for them."""

from __future__ import annotations

from gateway.app import create_app
from gateway.devtools.processes import free_port


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
