"""What the HTTP parser refuses is answered in GitLab's JSON shape, and nothing refused (a
token, a header's value) reaches a log line: checked against a real ``gateway serve`` at DEBUG,
reading its stderr."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Settings
from tests.conftest import GatewayProcess, World, start_gateway
from tests.security.malformed import malformed_requests


@pytest.fixture(params=["c-parser", "python-parser"])
def debug_gateway(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path, world: World
) -> Iterator[GatewayProcess]:
    """``gateway serve`` logging at DEBUG, with aiohttp's C parser and with its Python one."""
    extra = {"AIOHTTP_NO_EXTENSIONS": "1"} if request.param == "python-parser" else {}
    gw = start_gateway(settings, tmp_path, GATEWAY_LOG_LEVEL="DEBUG", **extra)
    yield gw
    gw.stop()


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection; the first answer (or b"" if it closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(20):
            head = await reader.readuntil(b"\r\n\r\n")
            _, headers, _ = parse(head)
            return head + await reader.readexactly(int(headers.get("content-length", "0")))
    except (ConnectionResetError, asyncio.IncompleteReadError):
        return b""
    finally:
        writer.close()


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", len(body)))
    return int(lines[0].split()[1]), headers, body[:length]


async def test_fifty_malformed_requests_get_json_and_leave_the_token_out_of_the_log(
    debug_gateway: GatewayProcess, world: World
) -> None:
    token = world.tokens["developer"]
    marker = secrets.token_hex(12)
    requests = malformed_requests(token, marker)
    assert len(requests) == 50
    port = int(debug_gateway.url.rsplit(":", 1)[1])
    answers = {}
    for name, raw in requests:
        status, headers, body = parse(await exchange(port, raw))
        answers[name] = (status, headers.get("content-type"), json.loads(body))
    debug_gateway.stop()  # everything it logged is on disk
    log = debug_gateway.log()

    not_json = {n: a for n, a in answers.items()
                if a[0] not in (400, 414, 431) or a[1] != "application/json"
                or not isinstance(a[2].get("message"), str)}
    assert not_json == {}
    assert token not in log
    assert token[6:] not in log  # not even without its prefix
    assert marker not in log
    assert '"level":"error"' not in log
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 0

