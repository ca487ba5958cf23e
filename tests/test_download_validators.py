"""Digests and validators on the way out: X-Checksum-*, Repr-Digest, ETag, Last-Modified on
GET (redirect and proxy) and HEAD; If-None-Match and If-Modified-Since answer 304."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib

import pytest

from gateway.app import create_app
from tests.conftest import World
from tests.package_helpers import generic_url, hdr

BODY = b"validators travel with every answer\n"
SHA256 = hashlib.sha256(BODY).hexdigest()
ETAG = f'"{SHA256}"'


@pytest.fixture(params=["redirect", "proxy"])
async def gw(request, aiohttp_client, settings, world: World):
    client = await aiohttp_client(create_app(settings.with_overrides(
        download_mode=request.param)))
    resp = await client.put(generic_url(world.project_id), data=BODY,
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    return client


def url(world: World) -> str:
    return generic_url(world.project_id)


async def fetch(gw, world: World, method: str, **headers: str):
    return await gw.request(method, url(world), allow_redirects=False,
                            headers={**hdr(world.tokens["reporter"]), **headers})


async def last_modified(world: World) -> str:
    created = await world.conn.fetchval("SELECT created_at FROM package_files")
    return email.utils.format_datetime(created.astimezone(dt.UTC).replace(microsecond=0),
                                       usegmt=True)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_every_download_answer_carries_digests_and_validators(gw, world: World,
                                                                    method: str) -> None:
    resp = await fetch(gw, world, method)
    assert resp.status in (200, 302)
    assert resp.headers["X-Checksum-SHA256"] == SHA256
    assert resp.headers["X-Checksum-Sha1"] == hashlib.sha1(BODY).hexdigest()
    assert resp.headers["X-Checksum-Md5"] == hashlib.md5(BODY).hexdigest()
    assert resp.headers["Repr-Digest"] == (
        f"sha-256=:{base64.b64encode(hashlib.sha256(BODY).digest()).decode()}:"
    )
    assert resp.headers["ETag"] == ETAG
    assert resp.headers["Last-Modified"] == await last_modified(world)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("value", [ETAG, f"W/{ETAG}", f'"other", {ETAG}', "*"])
async def test_if_none_match_of_the_etag_is_304(gw, world: World, method: str, value: str
                                                ) -> None:
    resp = await fetch(gw, world, method, **{"If-None-Match": value})
    assert resp.status == 304
    assert resp.headers["ETag"] == ETAG
    assert "Location" not in resp.headers
    assert await resp.read() == b""


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_if_none_match_of_another_etag_serves_the_file(gw, world: World, method: str
                                                             ) -> None:
    resp = await fetch(gw, world, method, **{"If-None-Match": '"' + "0" * 64 + '"'})
    assert resp.status in (200, 302)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_if_modified_since_the_upload_is_304(gw, world: World, method: str) -> None:
    resp = await fetch(gw, world, method, **{"If-Modified-Since": await last_modified(world)})
    assert resp.status == 304
    assert resp.headers["Last-Modified"] == await last_modified(world)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_if_modified_since_before_the_upload_serves_the_file(gw, world: World,
                                                                   method: str) -> None:
    resp = await fetch(gw, world, method,
                       **{"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})
    assert resp.status in (200, 302)


async def test_if_none_match_wins_over_if_modified_since(gw, world: World) -> None:
    resp = await fetch(gw, world, "GET", **{
        "If-None-Match": '"' + "0" * 64 + '"', "If-Modified-Since": await last_modified(world),
    })
    assert resp.status in (200, 302)


async def test_a_malformed_if_modified_since_is_ignored(gw, world: World) -> None:
    resp = await fetch(gw, world, "GET", **{"If-Modified-Since": "yesterday"})
    assert resp.status in (200, 302)


async def test_a_new_upload_changes_the_etag(gw, world: World) -> None:
    resp = await gw.put(url(world), data=b"v2", headers=hdr(world.tokens["developer"]))
    assert resp.status == 201
    resp = await fetch(gw, world, "GET", **{"If-None-Match": ETAG})
    assert resp.status in (200, 302)
    assert resp.headers["ETag"] == f'"{hashlib.sha256(b"v2").hexdigest()}"'


async def test_304_is_only_for_callers_who_may_read(gw, world: World) -> None:
    resp = await gw.get(url(world), headers={**hdr(world.tokens["outsider"]),
                                             "If-None-Match": "*"})
    assert resp.status == 404
    assert "ETag" not in resp.headers
