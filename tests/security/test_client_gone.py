"""A client that hangs up is a 499 in the access log: no ERROR line, no traceback (checked on a
real ``gateway serve``); client mistakes are logged at INFO or WARNING, never ERROR."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.config import Settings
from tests.conftest import World, start_gateway
from tests.faults.checks import wait_for
from tests.faults.rawhttp import RawUpload, put_head
from tests.security.edgeclient import port_of


def records(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


async def test_client_hanging_up_mid_upload_is_logged_as_499_without_a_traceback(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    log = await _hang_up_mid_upload(settings, tmp_path, world)
    lines = records(log)
    access = [r for r in lines if r.get("logger") == "aiohttp.access" and r.get("method") == "PUT"]
    assert [r["status"] for r in access] == [499]
    assert [r for r in lines if r["level"] in ("error", "critical")] == []
    assert "Traceback" not in log


async def test_client_hanging_up_mid_upload_is_logged_with_the_bytes_it_sent(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    log = await _hang_up_mid_upload(settings, tmp_path, world)
    (line,) = [r for r in records(log) if r.get("status") == 499]
    assert line["bytes_in"] <= 2**20  # what was sent, not the 10 MiB Content-Length declared


async def _hang_up_mid_upload(settings: Settings, tmp_path: Path, world: World) -> str:
    """The log of a gateway whose client declared 10 MiB, sent 1 MiB and hung up."""
    gw = start_gateway(settings, tmp_path)
    try:
        path = f"/api/v4/projects/{world.project_id}/packages/generic/pkg/1.0/f.bin"
        raw = await RawUpload("127.0.0.1", port_of(gw.url)).connect()
        await raw.send(put_head(path, world.tokens["developer"], length=10 * 2**20))
        await raw.send(b"x" * 2**20)
        await wait_for(lambda: _pending(world), "the upload started")
        await raw.abort()

        async def logged() -> bool:
            return any(r.get("status") == 499 for r in records(gw.log()))

        await wait_for(logged, "the 499 line")
    finally:
        gw.stop()
    return gw.log()


async def _pending(world: World) -> bool:
    return bool(await world.conn.fetchval("SELECT count(*) FROM pending_uploads"))


async def test_refused_requests_are_logged_below_error(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    gw = start_gateway(settings, tmp_path)
    try:
        port = port_of(gw.url)
        for raw in (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                    b"\x16\x03\x01\x00\x05hello\r\n\r\n",
                    b"GET /api/v4/projects/999999999 HTTP/1.1\r\nHost: x\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await reader.read(65536)
            writer.close()
    finally:
        gw.stop()
    assert [r for r in records(gw.log()) if r["level"] in ("error", "critical")] == []
