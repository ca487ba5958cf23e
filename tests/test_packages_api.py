"""The Packages API: lists with every filter, order and page boundary; get; files; delete;
the group list; python-gitlab against a live gateway."""

from __future__ import annotations

import asyncio
import warnings

import gitlab
import pytest

from gateway import auth
from gateway.identity import tokens
from tests.conftest import World
from tests.package_helpers import (
    bucket_keys,
    eventually,
    generic_url,
    group_member,
    hdr,
    insert_package,
    project_in,
    subgroup,
)

PACKAGES = "/api/v4/projects/{pid}/packages"


def packages_url(world: World, suffix: str = "", pid: object = None) -> str:
    return PACKAGES.format(pid=pid or world.project_id) + suffix


async def names(resp) -> list[str]:
    assert resp.status == 200, await resp.text()
    return [p["name"] for p in await resp.json()]


# --- lists: filters ------------------------------------------------------------------------


async def test_list_answers_packages_in_creation_order_with_headers(client, world) -> None:
    for name in ("toolchain", "my-tools", "other"):
        await insert_package(world.conn, world.project_id, name, "1.0.0")
    resp = await client.get(packages_url(world), headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["toolchain", "my-tools", "other"]
    h = resp.headers
    assert (h["X-Total"], h["X-Total-Pages"], h["X-Page"], h["X-Per-Page"]) == ("3", "1", "1", "20")
    assert (h["X-Next-Page"], h["X-Prev-Page"]) == ("", "")
    assert all("versions" not in p for p in await resp.json())


async def test_list_item_has_gitlab_entity_fields(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "toolchain", "1.4.0")
    resp = await client.get(packages_url(world), headers=hdr(world.tokens["reporter"]))
    (item,) = await resp.json()
    assert item["id"] == pkg["id"]
    assert item["version"] == "1.4.0"
    assert item["package_type"] == "generic"
    assert item["status"] == "default"
    assert item["_links"] == {"web_path": f"/acme/tools/-/packages/{pkg['id']}"}
    assert item["created_at"].endswith("Z") and item["last_downloaded_at"] is None
    assert item["tags"] == []
    assert "project_id" not in item


async def test_list_accepts_url_encoded_project_path(client, world) -> None:
    await insert_package(world.conn, world.project_id, "toolchain", "1.0.0")
    resp = await client.get("/api/v4/projects/ACME%2Ftools/packages",
                            headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["toolchain"]


async def test_package_name_filter_is_case_insensitive_substring(client, world) -> None:
    for name in ("toolchain", "My-Tools", "other"):
        await insert_package(world.conn, world.project_id, name, "1.0.0")
    resp = await client.get(packages_url(world, "?package_name=TOOL"),
                            headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["toolchain", "My-Tools"]


async def test_package_name_filter_takes_like_wildcards_literally(client, world) -> None:
    for name in ("a_b", "axb"):
        await insert_package(world.conn, world.project_id, name, "1.0.0")
    resp = await client.get(packages_url(world, "?package_name=a_"),
                            headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["a_b"]


async def test_package_version_filter_is_exact(client, world) -> None:
    for version in ("1.4.0", "1.4.0-rc1", "1.4"):
        await insert_package(world.conn, world.project_id, "tool", version)
    resp = await client.get(packages_url(world, "?package_version=1.4.0&package_type=generic"),
                            headers=hdr(world.tokens["reporter"]))
    assert [p["version"] for p in await resp.json()] == ["1.4.0"]


async def test_package_type_filter_selects_that_type(client, world) -> None:
    await insert_package(world.conn, world.project_id, "gen", "1.0.0")
    await insert_package(world.conn, world.project_id, "npmpkg", "1.0.0", package_type=2)
    resp = await client.get(packages_url(world, "?package_type=npm"),
                            headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["npmpkg"]


async def test_list_without_type_leaves_out_terraform_modules(client, world) -> None:
    await insert_package(world.conn, world.project_id, "gen", "1.0.0")
    await insert_package(world.conn, world.project_id, "tf", "1.0.0", package_type=12)
    resp = await client.get(packages_url(world), headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["gen"]


async def test_unknown_package_type_is_refused(client, world) -> None:
    resp = await client.get(packages_url(world, "?package_type=cargo"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "package_type does not have a valid value"}


async def test_hidden_packages_listed_only_with_status_hidden(client, world) -> None:
    await insert_package(world.conn, world.project_id, "shown", "1.0.0")
    await insert_package(world.conn, world.project_id, "hidden", "1.0.0", status="hidden")
    await insert_package(world.conn, world.project_id, "broken", "1.0.0", status="error")
    token = hdr(world.tokens["reporter"])
    assert await names(await client.get(packages_url(world), headers=token)) == [
        "shown", "broken"]
    assert await names(await client.get(packages_url(world, "?status=hidden"),
                                        headers=token)) == ["hidden"]


async def test_unknown_status_is_refused(client, world) -> None:
    resp = await client.get(packages_url(world, "?status=gone"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "status does not have a valid value"}


async def test_include_versionless_is_accepted_in_python_spelling(client, world) -> None:
    await insert_package(world.conn, world.project_id, "tool", "1.0.0")
    resp = await client.get(packages_url(world, "?include_versionless=True"),
                            headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["tool"]


# --- lists: order ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("order_by=name", ["a", "b", "c"]),
        ("order_by=name&sort=desc", ["c", "b", "a"]),
        ("order_by=version", ["b", "c", "a"]),
        ("order_by=created_at&sort=desc", ["a", "c", "b"]),
        ("order_by=type", ["b", "c", "a"]),
    ],
)
async def test_list_order(client, world, query: str, expected: list[str]) -> None:
    await insert_package(world.conn, world.project_id, "b", "1.0", package_type=2)
    await insert_package(world.conn, world.project_id, "c", "1.1")
    await insert_package(world.conn, world.project_id, "a", "2.0")
    resp = await client.get(packages_url(world, f"?{query}"), headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == expected


async def test_order_by_id_is_refused(client, world) -> None:
    resp = await client.get(packages_url(world, "?order_by=id"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "order_by does not have a valid value"}


async def test_unknown_sort_is_refused(client, world) -> None:
    resp = await client.get(packages_url(world, "?sort=up"), headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "sort does not have a valid value"}


# --- lists: pages ----------------------------------------------------------------------------


async def test_middle_page_has_prev_next_first_last_links(client, world) -> None:
    for i in range(5):
        await insert_package(world.conn, world.project_id, f"p{i}", "1.0")
    resp = await client.get(packages_url(world, "?per_page=2&page=2"),
                            headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["p2", "p3"]
    h = resp.headers
    assert (h["X-Prev-Page"], h["X-Next-Page"], h["X-Total-Pages"]) == ("1", "3", "3")
    rels = [part.split('rel="')[1].rstrip('"') for part in h["Link"].split(", ")]
    assert rels == ["prev", "next", "first", "last"]
    assert h["Link"].startswith(f"<{str(client.make_url('/')).rstrip('/')}/api/v4/projects/")
    assert "page=3&per_page=2" in h["Link"].split(", ")[1]


async def test_last_page_has_empty_next_page(client, world) -> None:
    for i in range(5):
        await insert_package(world.conn, world.project_id, f"p{i}", "1.0")
    resp = await client.get(packages_url(world, "?per_page=2&page=3"),
                            headers=hdr(world.tokens["reporter"]))
    assert await names(resp) == ["p4"]
    assert resp.headers["X-Next-Page"] == ""
    assert 'rel="next"' not in resp.headers["Link"]


async def test_page_beyond_last_is_empty_with_real_totals(client, world) -> None:
    for i in range(3):
        await insert_package(world.conn, world.project_id, f"p{i}", "1.0")
    resp = await client.get(packages_url(world, "?per_page=2&page=9"),
                            headers=hdr(world.tokens["reporter"]))
    assert await resp.json() == []
    assert (resp.headers["X-Total"], resp.headers["X-Total-Pages"]) == ("3", "2")
    assert resp.headers["X-Next-Page"] == ""


async def test_empty_list_says_one_page(client, world) -> None:
    resp = await client.get(packages_url(world), headers=hdr(world.tokens["reporter"]))
    assert await resp.json() == []
    assert (resp.headers["X-Total"], resp.headers["X-Total-Pages"]) == ("0", "1")
    assert [p.split('rel="')[1] for p in resp.headers["Link"].split(", ")] == [
        'first"', 'last"']


async def test_per_page_above_100_is_capped(client, world) -> None:
    for i in range(101):
        await insert_package(world.conn, world.project_id, f"p{i:03d}", "1.0")
    resp = await client.get(packages_url(world, "?per_page=500"),
                            headers=hdr(world.tokens["reporter"]))
    assert len(await resp.json()) == 100
    assert resp.headers["X-Per-Page"] == "100"
    assert resp.headers["X-Next-Page"] == "2"


async def test_per_page_zero_is_refused(client, world) -> None:
    resp = await client.get(packages_url(world, "?per_page=0"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "per_page has a value not allowed"}


async def test_non_integer_page_is_refused(client, world) -> None:
    resp = await client.get(packages_url(world, "?page=two"), headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "page is invalid"}


# --- lists: who ------------------------------------------------------------------------------


async def test_unknown_project_is_project_not_found(client, world) -> None:
    resp = await client.get(packages_url(world, pid=999999), headers=hdr(world.tokens["reporter"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Project Not Found"}


async def test_outsider_of_private_project_gets_project_not_found(client, world) -> None:
    resp = await client.get(packages_url(world), headers=hdr(world.tokens["outsider"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Project Not Found"}


async def test_anonymous_caller_of_private_project_gets_project_not_found(client, world) -> None:
    resp = await client.get(packages_url(world))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Project Not Found"}


async def test_guest_may_not_list_packages(client, world) -> None:
    resp = await client.get(packages_url(world), headers=hdr(world.tokens["guest"]))
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden"}


async def test_disabled_registry_forbids_listing(client, world) -> None:
    await world.conn.execute("UPDATE projects SET packages_enabled = false WHERE id = $1",
                             world.project_id)
    resp = await client.get(packages_url(world), headers=hdr(world.tokens["reporter"]))
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden"}


# --- one package, its files ------------------------------------------------------------------


async def test_get_package_has_other_versions_and_delete_link_for_maintainer(client,
                                                                              world) -> None:
    old = await insert_package(world.conn, world.project_id, "toolchain", "1.3.0")
    pkg = await insert_package(world.conn, world.project_id, "toolchain", "1.4.0")
    await insert_package(world.conn, world.project_id, "toolchain", "0.9.0", status="hidden")
    resp = await client.get(packages_url(world, f"/{pkg['id']}"),
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 200
    body = await resp.json()
    assert [v["version"] for v in body["versions"]] == ["1.3.0"]
    assert body["versions"][0]["id"] == old["id"]
    assert body["_links"]["delete_api_path"] == str(
        client.make_url(f"/api/v4/projects/{world.project_id}/packages/{pkg['id']}"))


async def test_get_package_for_reporter_has_no_delete_link(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "toolchain", "1.4.0")
    resp = await client.get(packages_url(world, f"/{pkg['id']}"),
                            headers=hdr(world.tokens["reporter"]))
    assert "delete_api_path" not in (await resp.json())["_links"]


async def test_get_hidden_package_is_not_found(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "t", "1.0", status="hidden")
    resp = await client.get(packages_url(world, f"/{pkg['id']}"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}


async def test_get_package_in_error_is_package_not_found(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "t", "1.0", status="error")
    resp = await client.get(packages_url(world, f"/{pkg['id']}"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "Package not found"}


async def test_get_package_of_another_project_is_not_found(client, world) -> None:
    other = await world.project("acme", "other")
    pkg = await insert_package(world.conn, other, "t", "1.0")
    resp = await client.get(packages_url(world, f"/{pkg['id']}"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}


async def test_non_integer_package_id_is_refused(client, world) -> None:
    resp = await client.get(packages_url(world, "/abc"), headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "package_id is invalid"}


async def test_package_files_listed_by_id_with_digests(client, world) -> None:
    token = hdr(world.tokens["developer"])
    for body in (b"one", b"two"):
        assert (await client.put(generic_url(world.project_id), data=body, headers=token)).status \
            == 201
    assert (await client.put(generic_url(world.project_id, file="b.txt"), data=b"b",
                             headers=token)).status == 201
    (pkg,) = await (await client.get(packages_url(world), headers=token)).json()
    resp = await client.get(packages_url(world, f"/{pkg['id']}/package_files"), headers=token)
    files = await resp.json()
    assert [f["file_name"] for f in files] == ["file.txt", "file.txt", "b.txt"]
    assert [f["id"] for f in files] == sorted(f["id"] for f in files)
    assert files[0]["size"] == 3 and len(files[0]["file_sha256"]) == 64
    assert resp.headers["X-Total"] == "3"


async def test_package_files_order_by_file_name_desc(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "t", "1.0",
                               files=("b.txt", "a.txt", "c.txt"))
    resp = await client.get(packages_url(world, f"/{pkg['id']}/package_files"
                                                "?order_by=file_name&sort=desc"),
                            headers=hdr(world.tokens["reporter"]))
    assert [f["file_name"] for f in await resp.json()] == ["c.txt", "b.txt", "a.txt"]


async def test_files_of_hidden_package_are_not_found(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "t", "1.0", status="hidden",
                               files=("a.txt",))
    resp = await client.get(packages_url(world, f"/{pkg['id']}/package_files"),
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}


# --- delete ------------------------------------------------------------------------------------


async def test_developer_may_not_delete_even_a_missing_package(client, world) -> None:
    resp = await client.delete(packages_url(world, "/424242"),
                               headers=hdr(world.tokens["developer"]))
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden"}


@pytest.mark.parametrize(("scopes", "status"), [
    (["write_package_registry"], 204),
    (["read_package_registry"], 403),
])
async def test_deploy_token_deletes_a_package_only_with_write_scope(
    client, world, scopes: list[str], status: int
) -> None:
    pkg = await insert_package(world.conn, world.project_id, "t", "1.0", files=("a.txt",))
    token, _ = await _deploy_token(
        world.conn, project_id=world.project_id, name="robot", scopes=scopes, expires_at=None,
        username=None,
    )
    resp = await client.delete(packages_url(world, f"/{pkg['id']}"),
                               headers={"Deploy-Token": token})
    assert resp.status == status


async def test_deleted_package_is_gone_from_get_and_list(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "t", "1.0", files=("a.txt",))
    token = hdr(world.tokens["maintainer"])
    resp = await client.delete(packages_url(world, f"/{pkg['id']}"), headers=token)
    assert resp.status == 204
    assert await resp.read() == b""
    got = await client.get(packages_url(world, f"/{pkg['id']}"), headers=token)
    assert (got.status, await got.json()) == (404, {"message": "404 Not found"})
    assert await (await client.get(packages_url(world), headers=token)).json() == []


async def test_delete_missing_package_is_not_found(client, world) -> None:
    resp = await client.delete(packages_url(world, "/424242"),
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not found"}


async def test_delete_file_of_another_package_is_not_found(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "t", "1.0", files=("a.txt",))
    other = await insert_package(world.conn, world.project_id, "u", "1.0", files=("b.txt",))
    other_file = await world.conn.fetchval(
        "SELECT id FROM package_files WHERE package_id = $1", other["id"])
    resp = await client.delete(packages_url(world, f"/{pkg['id']}/package_files/{other_file}"),
                               headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Not Found"}


async def test_deleting_a_file_keeps_the_package(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "t", "1.0", files=("a.txt",))
    file_id = await world.conn.fetchval(
        "SELECT id FROM package_files WHERE package_id = $1", pkg["id"])
    token = hdr(world.tokens["maintainer"])
    resp = await client.delete(packages_url(world, f"/{pkg['id']}/package_files/{file_id}"),
                               headers=token)
    assert resp.status == 204
    files = await client.get(packages_url(world, f"/{pkg['id']}/package_files"), headers=token)
    assert await files.json() == []
    assert (await client.get(packages_url(world, f"/{pkg['id']}"), headers=token)).status == 200


# --- the group list ----------------------------------------------------------------------------


async def test_group_list_covers_subgroups_with_project_id_and_path(client, world) -> None:
    sub = await subgroup(world.conn, "acme", "sub")
    deep = await project_in(world.conn, sub, "deep")
    await insert_package(world.conn, world.project_id, "top", "1.0")
    await insert_package(world.conn, deep, "nested", "1.0")
    resp = await client.get("/api/v4/groups/acme/packages", headers=hdr(world.admin_token))
    items = await resp.json()
    assert [(p["name"], p["project_id"], p["project_path"]) for p in items] == [
        ("top", world.project_id, "acme/tools"), ("nested", deep, "acme/sub/deep")]


async def test_group_list_exclude_subgroups(client, world) -> None:
    sub = await subgroup(world.conn, "acme", "sub")
    await insert_package(world.conn, world.project_id, "top", "1.0")
    await insert_package(world.conn, await project_in(world.conn, sub, "deep"), "nested", "1.0")
    resp = await client.get("/api/v4/groups/acme/packages?exclude_subgroups=True",
                            headers=hdr(world.admin_token))
    assert await names(resp) == ["top"]


async def test_group_list_shows_only_projects_the_caller_may_read(client, world) -> None:
    await group_member(world.conn, "acme", "outsider", auth.GUEST)
    other = await world.project("acme", "other")
    await world.member((await world.conn.fetchval(
        "SELECT id FROM users WHERE username = 'outsider'")), auth.REPORTER, other)
    await insert_package(world.conn, world.project_id, "hidden-from-guest", "1.0")
    await insert_package(world.conn, other, "readable", "1.0")
    resp = await client.get("/api/v4/groups/acme/packages", headers=hdr(world.tokens["outsider"]))
    assert await names(resp) == ["readable"]


async def test_group_list_order_by_project_path(client, world) -> None:
    other = await world.project("acme", "alpha")
    await insert_package(world.conn, world.project_id, "in-tools", "1.0")
    await insert_package(world.conn, other, "in-alpha", "1.0")
    resp = await client.get("/api/v4/groups/acme/packages?order_by=project_path",
                            headers=hdr(world.admin_token))
    assert await names(resp) == ["in-alpha", "in-tools"]


async def test_invisible_group_is_group_not_found(client, world) -> None:
    resp = await client.get("/api/v4/groups/acme/packages", headers=hdr(world.tokens["outsider"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Group Not Found"}


# --- python-gitlab against `gateway serve` ----------------------------------------------


async def test_python_gitlab_pages_through_more_than_100_packages(gateway, world) -> None:
    for i in range(130):
        await insert_package(world.conn, world.project_id, f"p{i:03d}", "1.0")
    gl = gitlab.Gitlab(gateway.url, private_token=world.tokens["reporter"])

    def list_all() -> list[str]:
        project = gl.projects.get(world.project_id, lazy=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a base URL mismatch would warn
            return [p.name for p in project.packages.list(get_all=True, per_page=100)]

    assert await asyncio.to_thread(list_all) == [f"p{i:03d}" for i in range(130)]


async def test_python_gitlab_default_pages_reach_every_package(gateway, world) -> None:
    for i in range(45):
        await insert_package(world.conn, world.project_id, f"p{i:03d}", "1.0")
    gl = gitlab.Gitlab(gateway.url, private_token=world.tokens["reporter"])

    def count() -> tuple[int, int]:
        project = gl.projects.get("acme/tools", lazy=True)
        pages = project.packages.list(iterator=True)
        return len(pages), len(list(pages))

    assert await asyncio.to_thread(count) == (45, 45)


async def test_python_gitlab_lists_inspects_and_deletes(gateway, world, s3, settings) -> None:
    gl = gitlab.Gitlab(gateway.url, private_token=world.tokens["maintainer"])
    admin = gitlab.Gitlab(gateway.url, private_token=world.admin_token)

    def scenario() -> None:
        project = gl.projects.get(world.project_id, lazy=True)
        for name, file_name in (("foo", "a.txt"), ("foo", "b.txt"), ("bar", "c.txt")):
            project.generic_packages.upload(package_name=name, package_version="1.0",
                                            file_name=file_name, data=b"abc")
        pkg = project.packages.list(package_name="foo")[0]
        assert project.packages.get(pkg.id).versions == []
        files = pkg.package_files.list()
        assert [f.file_name for f in files] == ["a.txt", "b.txt"]
        files[0].delete()
        assert [f.file_name for f in pkg.package_files.list()] == ["b.txt"]
        group = admin.groups.get("acme", lazy=True)
        assert sorted(p.name for p in group.packages.list()) == ["bar", "foo"]
        for p in project.packages.list(get_all=True):
            project.packages.delete(p.id)
        assert project.packages.list(get_all=True) == []
        with pytest.raises(gitlab.GitlabGetError) as got:
            project.packages.get(pkg.id)
        assert got.value.response_code == 404
        with pytest.raises(gitlab.GitlabDeleteError) as deleted:
            project.packages.delete(999999)
        assert deleted.value.response_code == 404

    await asyncio.to_thread(scenario)
    # Deleting everything leaves no package object in the bucket.
    await eventually(lambda: not bucket_keys(s3, settings.s3_bucket), "bucket emptied")
    assert await world.conn.fetchval("SELECT count(*) FROM object_deletions") == 0


async def _deploy_token(conn, **kw):
    issued = await tokens.issue_deploy_token(conn, **kw)
    return issued.token, issued.record
