"""Small uploads from many concurrent clients for a fixed time, to one of three targets:

- ``gateway``: ``PUT`` of a generic package file (PRIVATE-TOKEN);
- ``direct``: aiobotocore ``PutObject`` straight to the S3 server (what the gateway's own
  store call costs at best);
- ``registry``: an OCI blob push (``POST`` an upload, ``PUT`` the bytes with their digest).

Every body is distinct (a counter in front), so nothing can be deduplicated. Run as a child
process (``python -m benchmarks.smallfiles``) so the load has an interpreter of its own;
prints one JSON object: uploads, errors, the first error, every latency in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

Upload = Callable[[str, bytes], Awaitable[None]]


def _body(size: int, name: str) -> bytes:
    tag = name.encode()
    return (tag + os.urandom(max(0, size - len(tag))))[:size]


async def _gateway(session: aiohttp.ClientSession, base: str, token: str) -> Upload:
    async def put(name: str, data: bytes) -> None:
        async with session.put(f"{base}/{name}", data=data,
                               headers={"PRIVATE-TOKEN": token}) as resp:
            await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"gateway answered {resp.status}")
    return put


async def _registry(session: aiohttp.ClientSession, base: str, repository: str) -> Upload:
    async def push(name: str, data: bytes) -> None:
        async with session.post(f"{base}/v2/{repository}/blobs/uploads/") as resp:
            await resp.read()
            if resp.status != 202:
                raise RuntimeError(f"registry POST answered {resp.status}")
            location = resp.headers["Location"]
        if location.startswith("/"):
            location = base + location
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        async with session.put(location, params={"digest": digest}, data=data,
                               headers={"Content-Type": "application/octet-stream"}) as resp:
            await resp.read()
            if resp.status != 201:
                raise RuntimeError(f"registry PUT answered {resp.status}")
    return push


async def run(target: str, url: str, clients: int, seconds: float, size: int, prefix: str,
              extra: dict[str, str]) -> dict[str, object]:
    latencies: list[float] = []
    errors = 0
    first_error = ""
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=timeout))
        if target == "gateway":
            upload = await _gateway(session, url, extra["token"])
        elif target == "registry":
            upload = await _registry(session, url, extra["repository"])
        else:
            upload = await _direct(stack, url, extra["bucket"], clients)
        deadline = time.monotonic() + seconds

        async def client(i: int) -> None:
            nonlocal errors, first_error
            n = 0
            while time.monotonic() < deadline:
                name = f"{prefix}-{i}-{n}.bin"
                n += 1
                data = _body(size, name)
                start = time.perf_counter()
                try:
                    await upload(name, data)
                except Exception as exc:
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                    continue
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(client(i) for i in range(clients)))
    return {"uploads": len(latencies), "errors": errors, "first_error": first_error,
            "latencies": latencies}


async def _direct(stack: contextlib.AsyncExitStack, endpoint: str, bucket: str,
                  clients: int) -> Upload:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    # As the gateway's own S3 client is set up (gateway/storage/s3.py): unsigned payloads,
    # a connection per client.
    config = AioConfig(signature_version="s3v4",
                       s3={"addressing_style": "path", "payload_signing_enabled": False},
                       request_checksum_calculation="when_required",
                       max_pool_connections=clients)
    client = await stack.enter_async_context(get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=config))

    async def put(name: str, data: bytes) -> None:
        await client.put_object(Bucket=bucket, Key=name, Body=data)
    return put


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=("gateway", "direct", "registry"))
    parser.add_argument("url", help="files' base URL, S3 endpoint or registry URL")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--prefix", default="small")
    parser.add_argument("--token", default="")
    parser.add_argument("--bucket", default="")
    parser.add_argument("--repository", default="")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    extra = {"token": args.token, "bucket": args.bucket, "repository": args.repository}
    result = asyncio.run(run(args.target, args.url, args.clients, args.seconds, args.size,
                             args.prefix, extra))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
