"""What every fault test asserts at the end: nothing lost, nothing half-written, nothing left."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter

import asyncpg


def store_state(s3, bucket: str) -> tuple[set[str], list[dict]]:
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    try:
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    except s3.exceptions.NoSuchUpload:
        uploads = []  # rclone's answer while no multipart upload was ever started there
    return keys, uploads


async def assert_consistent(
    conn: asyncpg.Connection, s3, bucket: str, accepted: list[str], *, within: float = 30.0
) -> None:
    """``accepted``: the sha256 of every body answered 201. Waits up to ``within`` seconds for
    clean-up (the sweeper's stale window), then asserts: exactly those files are visible, each
    object's bytes have its recorded sha256, no other object, no open multipart upload, no
    pending upload."""
    deadline = time.monotonic() + within
    while True:
        rows = await conn.fetch("SELECT object_key, file_sha256 FROM package_files")
        pending = await conn.fetch("SELECT object_key, upload_id FROM pending_uploads")
        keys, open_uploads = store_state(s3, bucket)
        settled = not pending and not open_uploads and keys == {r["object_key"] for r in rows}
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert Counter(r["file_sha256"] for r in rows) == Counter(accepted)
    for r in rows:
        data = s3.get_object(Bucket=bucket, Key=r["object_key"])["Body"].read()
        assert hashlib.sha256(data).hexdigest() == r["file_sha256"]
    assert keys == {r["object_key"] for r in rows}, "objects without a file row"
    assert open_uploads == [], "open multipart uploads"
    assert [dict(p) for p in pending] == [], "pending uploads left"


async def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    """Poll an async predicate until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        await asyncio.sleep(0.1)
