"""Arranging and checking resumable uploads: files of random bytes, the file a user sees."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import aiohttp
import asyncpg

from gateway.config import MiB

GENERIC = "/api/v4/projects/{pid}/packages/generic/{name}/{version}/{file}"


def make_file(path: Path, size: int) -> dict[str, str]:
    """``size`` random bytes at ``path``; their md5, sha1 and sha256."""
    md5, sha1, sha256 = hashlib.md5(), hashlib.sha1(), hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            for h in (md5, sha1, sha256):
                h.update(block)
            out.write(block)
            left -= len(block)
    return {"file_md5": md5.hexdigest(), "file_sha1": sha1.hexdigest(),
            "file_sha256": sha256.hexdigest()}


def file_url(base: str, pid: int, name: str = "data", version: str = "1.0.0",
             file: str = "blob.bin") -> str:
    return base + GENERIC.format(pid=pid, name=name, version=version, file=file)


async def package_file(base: str, pid: int, token: str, name: str = "data"
                       ) -> dict[str, object] | None:
    """The file of package ``name`` as the Packages API shows it (None: no package)."""
    hdr = {"PRIVATE-TOKEN": token}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/v4/projects/{pid}/packages",
                            params={"package_name": name}, headers=hdr) as resp:
            assert resp.status == 200
            packages = [p for p in await resp.json() if p["name"] == name]
        if not packages:
            return None
        async with http.get(f"{base}/api/v4/projects/{pid}/packages/{packages[0]['id']}"
                            "/package_files", headers=hdr) as resp:
            files = await resp.json()
    assert len(files) == 1
    return files[0]


def digests(record: dict[str, object]) -> dict[str, object]:
    return {k: record[k] for k in ("file_md5", "file_sha1", "file_sha256")}


async def leftovers(conn: asyncpg.Connection, s3, bucket: str) -> dict[str, object]:
    """What an abandoned or refused upload could leave: rows, objects, multipart uploads."""
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        "sessions": await conn.fetchval("SELECT count(*) FROM upload_sessions"),
        "pending": await conn.fetchval("SELECT count(*) FROM pending_uploads"),
        "objects": len(objects),
        "multipart": len(uploads),
    }
