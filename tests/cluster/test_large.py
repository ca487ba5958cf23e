"""Multi-GiB bodies through nginx (no request buffering) and a gateway, intact."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.cluster.conftest import Api, unique

GiB = 2**30
BLOCK = 8 * 2**20


@pytest.mark.large
async def test_2_gib_upload_through_nginx_keeps_its_sha256(
    api: Api, http: aiohttp.ClientSession
) -> None:
    size = 2 * GiB
    block = os.urandom(BLOCK)
    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for i in range(size // BLOCK):
            chunk = i.to_bytes(8, "big") + block[8:]  # no two blocks alike
            sent.update(chunk)
            yield chunk

    url = api.file(unique("large"), "1.0.0", "big.bin")
    headers = {**api.auth, "Content-Length": str(size)}
    async with http.put(url + "?select=package_file", data=body(), headers=headers) as resp:
        assert resp.status == 200
        record = await resp.json()
    assert record["size"] == size
    assert record["file_sha256"] == sent.hexdigest()

    received = hashlib.sha256()
    async with http.get(url, headers=api.auth) as resp:  # the redirect, then S3's bytes
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(BLOCK):
            received.update(chunk)
    assert received.hexdigest() == sent.hexdigest()
