"""Digests declared on upload (Content-MD5, X-Checksum-*, Content-Digest, Repr-Digest) are
checked against the bytes received; Want-Repr-Digest is answered."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import World
from tests.faults.checks import assert_consistent
from tests.package_helpers import generic_url, hdr

BODY = b"integrity first\n"
OTHER = b"something else\n"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def declared(header: str, body: bytes) -> str:
    """``header`` as a client that computed the digest of ``body`` sends it."""
    return {
        "Content-MD5": b64(hashlib.md5(body).digest()),
        "X-Checksum-Md5": hashlib.md5(body).hexdigest(),
        "X-Checksum-Sha1": hashlib.sha1(body).hexdigest(),
        "X-Checksum-Sha256": hashlib.sha256(body).hexdigest(),
        "Content-Digest": f"sha-256=:{b64(hashlib.sha256(body).digest())}:",
        "Repr-Digest": f"sha-512=:{b64(hashlib.sha512(body).digest())}:, "
                       f"sha-256=:{b64(hashlib.sha256(body).digest())}:",
    }[header]


HEADERS = ["Content-MD5", "X-Checksum-Md5", "X-Checksum-Sha1", "X-Checksum-Sha256",
           "Content-Digest", "Repr-Digest"]


def url(world: World) -> str:
    return generic_url(world.project_id)


@pytest.mark.parametrize("header", HEADERS)
async def test_a_matching_declared_digest_stores_the_file(client, world: World, header: str
                                                          ) -> None:
    resp = await client.put(url(world), data=BODY,
                            headers={**hdr(world.tokens["developer"]),
                                     header: declared(header, BODY)})
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"message": "201 Created"}
    assert await world.conn.fetchval("SELECT file_sha256 FROM package_files") == (
        hashlib.sha256(BODY).hexdigest()
    )


@pytest.mark.parametrize("header", HEADERS)
async def test_a_mismatching_declared_digest_is_refused_and_stores_nothing(
    client, world: World, s3, settings, header: str
) -> None:
    resp = await client.put(url(world), data=BODY,
                            headers={**hdr(world.tokens["developer"]),
                                     header: declared(header, OTHER)})
    assert resp.status == 400
    expected = declared(header, OTHER)
    received = declared(header, BODY)
    if header == "Repr-Digest":  # the message quotes the algorithm that was checked
        expected, received = (v.split(", ")[1] for v in (expected, received))
    assert await resp.json() == {
        "message": f"400 Bad request - {header} mismatch: expected {expected}, "
                   f"received {received}"
    }
    await assert_consistent(world.conn, s3, settings.s3_bucket, [])


async def test_a_mismatch_of_a_multipart_upload_leaves_no_object_and_no_open_upload(
    client, world: World, s3, settings
) -> None:
    body = os.urandom(settings.part_size + 1024)
    resp = await client.put(url(world), data=body,
                            headers={**hdr(world.tokens["developer"]),
                                     "X-Checksum-Sha256": "0" * 64})
    assert resp.status == 400
    assert (await resp.json())["message"].startswith(
        "400 Bad request - X-Checksum-Sha256 mismatch: expected " + "0" * 64
    )
    await assert_consistent(world.conn, s3, settings.s3_bucket, [])


async def test_every_declared_digest_is_checked(client, world: World) -> None:
    resp = await client.put(url(world), data=BODY, headers={
        **hdr(world.tokens["developer"]),
        "X-Checksum-Sha256": declared("X-Checksum-Sha256", BODY),
        "X-Checksum-Sha1": declared("X-Checksum-Sha1", OTHER),
    })
    assert resp.status == 400
    assert "X-Checksum-Sha1 mismatch" in (await resp.json())["message"]


async def test_upper_case_hex_is_accepted(client, world: World) -> None:
    resp = await client.put(url(world), data=BODY, headers={
        **hdr(world.tokens["developer"]),
        "X-Checksum-Sha256": hashlib.sha256(BODY).hexdigest().upper(),
    })
    assert resp.status == 201


async def test_want_repr_digest_is_answered_with_the_stored_digest(client, world: World) -> None:
    resp = await client.put(url(world), data=BODY, headers={
        **hdr(world.tokens["developer"]), "Want-Repr-Digest": "sha-512=3, sha-256=10",
    })
    assert resp.status == 201
    assert resp.headers["Repr-Digest"] == f"sha-256=:{b64(hashlib.sha256(BODY).digest())}:"


async def test_want_repr_digest_also_on_select_package_file(client, world: World) -> None:
    resp = await client.put(url(world) + "?select=package_file", data=BODY, headers={
        **hdr(world.tokens["developer"]), "Want-Repr-Digest": "sha-256=1",
    })
    assert resp.status == 200
    assert resp.headers["Repr-Digest"] == f"sha-256=:{b64(hashlib.sha256(BODY).digest())}:"


async def test_no_repr_digest_unless_asked(client, world: World) -> None:
    resp = await client.put(url(world), data=BODY, headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    assert "Repr-Digest" not in resp.headers


async def test_sha_256_refused_by_weight_zero_gets_no_repr_digest(client, world: World) -> None:
    resp = await client.put(url(world), data=BODY, headers={
        **hdr(world.tokens["developer"]), "Want-Repr-Digest": "sha-256=0",
    })
    assert resp.status == 201
    assert "Repr-Digest" not in resp.headers


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_a_malformed_digest_is_refused_before_the_body_is_sent(
    client, world: World, s3, settings, tmp_path: Path
) -> None:
    file = tmp_path / "big.bin"
    file.write_bytes(os.urandom(4 * 1024 * 1024))
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}",
        "-H", f"PRIVATE-TOKEN: {world.tokens['developer']}", "-H", "Expect: 100-continue",
        "-H", "Content-MD5: not base64!", "--expect100-timeout", "30", "-T", str(file),
        str(client.make_url(url(world))), stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    status, sent = out.decode().split()
    assert (int(status), int(float(sent))) == (400, 0)
    await assert_consistent(world.conn, s3, settings.s3_bucket, [])
