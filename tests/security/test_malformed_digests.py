"""Digest headers a hostile or broken client sends: each is a JSON 400 naming the header,
given before the body is read, and nothing is stored."""

from __future__ import annotations

import pytest

from tests.conftest import World
from tests.faults.checks import assert_consistent
from tests.package_helpers import generic_url, hdr

MALFORMED = [
    ("Content-MD5", "not base64!"),
    ("Content-MD5", "AAAA"),  # base64, but not 16 bytes
    ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg"),  # no padding: not RFC 1864's encoding
    ("X-Checksum-Md5", "d41d8cd98f00b204e9800998ecf8427"),  # 31 hex digits
    ("X-Checksum-Sha1", "g" * 40),
    ("X-Checksum-Sha256", "0" * 63 + "\u0661"),  # a non-ASCII digit (Arabic-Indic one)
    ("X-Checksum-Sha256", "0x" + "0" * 62),
    ("X-Checksum-Sha256", "0" * 6400),
    ("Content-Digest", "sha-256=abc"),  # a token, not a byte sequence
    ("Content-Digest", "sha-256=:AAAA:"),  # a byte sequence of the wrong length
    ("Content-Digest", "SHA-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"),
    ("Content-Digest", "md5=:1B2M2Y8AsgTpgAmY7PhCfg==:"),  # nothing the gateway checks
    ("Repr-Digest", "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
    ("Repr-Digest", "sha-256=:\u00e9:"),
]


@pytest.mark.parametrize(("header", "value"), MALFORMED)
async def test_a_malformed_digest_header_is_a_json_400(client, world: World, s3, settings,
                                                        header: str, value: str) -> None:
    resp = await client.put(
        generic_url(world.project_id), data=b"bytes",
        headers={**hdr(world.tokens["developer"]), header: value.encode("utf-8").decode("latin-1")},
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["message"].startswith(f"400 Bad request - {header} ")
    assert value not in body["message"]  # the client's text is never echoed
    await assert_consistent(world.conn, s3, settings.s3_bucket, [])


async def test_a_digest_header_given_twice_is_refused(client, world: World) -> None:
    resp = await client.put(
        generic_url(world.project_id), data=b"bytes",
        headers=[("PRIVATE-TOKEN", world.tokens["developer"]),
                 ("X-Checksum-Sha256", "0" * 64), ("X-Checksum-Sha256", "1" * 64)],
    )
    assert resp.status == 400
    assert await resp.json() == {
        "message": "400 Bad request - X-Checksum-Sha256 is given more than once"
    }


async def test_digests_are_checked_after_authentication(client, world: World) -> None:
    """An anonymous client learns nothing new: GitLab's 401 comes first."""
    resp = await client.put(generic_url(world.project_id), data=b"bytes",
                            headers={"Content-MD5": "not base64!"})
    assert resp.status == 401


async def test_a_malformed_want_repr_digest_is_ignored(client, world: World) -> None:
    resp = await client.put(generic_url(world.project_id), data=b"bytes",
                            headers={**hdr(world.tokens["developer"]),
                                     "Want-Repr-Digest": "((("})
    assert resp.status == 201
    assert "Repr-Digest" not in resp.headers
