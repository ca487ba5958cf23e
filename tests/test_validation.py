"""Names, versions and paths GitLab refuses: the exact 400 (or 404) body, and nothing stored."""

from __future__ import annotations

import pytest

from gateway import naming
from tests.conftest import World

BASE = "/api/v4/projects/{pid}/packages/generic/"


def put_url(world: World, tail: str) -> str:
    return BASE.format(pid=world.project_id) + tail


async def put(client, world: World, tail: str, token: str = "developer"):
    return await client.put(put_url(world, tail), data=b"x",
                            headers={"PRIVATE-TOKEN": world.tokens[token]})


@pytest.mark.parametrize("version", [
    "1.3.350-20201230123456", "1.2.3g", "1.2", "v1.2.4-build", ".1", "1.",
    "d50d836eb3de6177ce6c7a5482f27f9c2c84b672",
])
async def test_valid_versions_are_accepted(client, world: World, version: str) -> None:
    resp = await put(client, world, f"mypackage/{version}/f.txt")
    assert resp.status == 201


@pytest.mark.parametrize("file_name", ["my+file.tar.gz", "my~file.tar.gz", "myfile@1.1.tar.gz"])
async def test_special_characters_in_file_names_are_accepted(client, world: World,
                                                            file_name: str) -> None:
    resp = await put(client, world, f"mypackage/1.0/{file_name}?select=package_file")
    assert resp.status == 200
    assert (await resp.json())["file_name"] == file_name


@pytest.mark.parametrize(("tail", "body"), [
    ("my%20package/0.0.1/f.txt", {"error": "package_name is invalid"}),
    ("my~package/0.0.1/f.txt", {"error": "package_name is invalid"}),
    ("my-package%2f%2e%2e%2f/0.0.1/f.txt", {"error": "package_name is invalid"}),
    ("../0.0.1/f.txt", None),
    ("mypackage/..1.2.3/f.txt", {"error": "package_version is invalid"}),
    ("mypackage/1.2.3-4%2F..%2F..%2F/f.txt", {"error": "package_version is invalid"}),
    ("mypackage/%2e%2e%2f1.2.3/f.txt", {"error": "package_version is invalid"}),
    ("mypackage//f.txt", {"error": "package_version is invalid"}),
    ("mypackage/1.0/~myfile.tar.gz", {"error": "file_name is invalid"}),
    ("mypackage/1.0/myfile.tar.gz~", {"error": "file_name is invalid"}),
    ("mypackage/1.0/@myfile1.1.tar.gz", {"error": "file_name is invalid"}),
    ("mypackage/1.0/myfile1.1.tar.gz@", {"error": "file_name is invalid"}),
    ("mypackage/1.0/%2e%2e%2f.ssh%2fauthorized_keys", {"error": "file_name is invalid"}),
    ("bad%20name/1.0/%7Ebad", {"error": "package_name is invalid, file_name is invalid"}),
    ("mypackage/1.0/..%2F..%2Fetc%2Fpasswd/f.txt", {"error": "path should be a valid file path"}),
    ("mypackage/1.0/f.txt?status=processing", {"error": "status does not have a valid value"}),
    ("mypackage/1.0/f.txt?select=x", {"error": "select does not have a valid value"}),
    ("..%2F/1.0/f.txt", {"error": "package_name is invalid"}),
])
async def test_invalid_parameters_get_gitlabs_400_and_store_nothing(
    client, world: World, tail: str, body: dict | None
) -> None:
    resp = await put(client, world, tail)
    if body is None:
        # A raw ".." segment is resolved by the URL parser (as by GitLab's front proxy) and
        # the request no longer names a generic package file.
        assert resp.status in (400, 404)
    else:
        assert resp.status == 400
        assert await resp.json() == body
    assert await world.conn.fetchval("SELECT count(*) FROM packages") == 0


async def test_dot_package_name_fails_the_file_path_check(client, world: World) -> None:
    assert naming.valid_file_path(".") is False
    with pytest.raises(naming.InvalidParameters) as err:
        naming.file_target("./1.0/f.txt")
    assert err.value.body() == {"error": "package_name should be a valid file path"}


async def test_two_segments_after_generic_is_no_route(client, world: World) -> None:
    resp = await put(client, world, "mypackage/file.txt")
    assert resp.status == 404
    assert await resp.json() == {"error": "404 Not Found"}


async def test_anonymous_put_with_bad_name_is_401_not_400(client, world: World) -> None:
    resp = await client.put(put_url(world, "mypackage/1.0/~x"), data=b"x")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="GitLab Packages Registry"'


async def test_anonymous_get_with_bad_name_is_400_before_auth(client, world: World) -> None:
    resp = await client.get(put_url(world, "mypackage/1.0/~x"))
    assert resp.status == 400
    assert await resp.json() == {"error": "file_name is invalid"}


async def test_bad_select_from_a_non_member_of_a_private_project_is_404(client,
                                                                       world: World) -> None:
    resp = await put(client, world, "mypackage/1.0/f.txt?select=x", token="outsider")
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not Found"}


async def test_unknown_api_route_is_grapes_404(client, world: World) -> None:
    resp = await client.get("/api/v4/nothing/here")
    assert resp.status == 404
    assert await resp.json() == {"error": "404 Not Found"}


async def test_api_v3_is_gone(client, world: World) -> None:
    resp = await client.get("/api/v3/projects")
    assert resp.status == 410
    assert await resp.json() == {"error": "API V3 is no longer supported. Use API V4 instead."}


async def test_error_bodies_are_compact_json_with_api_headers(client, world: World) -> None:
    resp = await put(client, world, "mypackage/1.0/~bad")
    assert await resp.read() == b'{"error":"file_name is invalid"}'
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_content_disposition_matches_rails() -> None:
    assert naming.content_disposition("myfile.tar.gz") == (
        "attachment; filename=\"myfile.tar.gz\"; filename*=UTF-8''myfile.tar.gz"
    )
    assert naming.content_disposition("path%2Fto%2Ffile.txt") == (
        "attachment; filename=\"path%252Fto%252Ffile.txt\"; "
        "filename*=UTF-8''path%252Fto%252Ffile.txt"
    )
    assert naming.content_disposition("a@b").startswith('attachment; filename="a%40b"')


def test_encode_uri_component_matches_ruby() -> None:
    assert naming.encode_uri_component("path/to/my~file @x+y.tgz") == (
        "path%2Fto%2Fmy%7Efile%20%40x%2By.tgz"
    )
