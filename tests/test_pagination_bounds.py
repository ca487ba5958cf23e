"""Keyset pages of the package lists (``pagination=keyset&order_by=id``), GitLab's offset limit
and its count limit, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import gitlab

from gateway.db import packages as q
from tests.conftest import World
from tests.package_helpers import group_member, hdr, insert_package, project_in

PACKAGES = "/api/v4/projects/{pid}/packages"
KEYSET = "pagination=keyset&order_by=id"


async def many_packages(world: World, count: int, project_id: int | None = None) -> list[int]:
    """``count`` packages in one statement (the per-row helper is too slow for thousands)."""
    rows = await world.conn.fetch(
        "INSERT INTO packages (project_id, name, version) "
        "SELECT $1, 'pkg-' || $3, i::text FROM generate_series(1, $2) i RETURNING id",
        project_id or world.project_id, count, uuid.uuid4().hex[:8])
    return sorted(r["id"] for r in rows)


def next_link(resp) -> str | None:
    link = resp.headers.get("Link")
    if link is None:
        return None
    (url,) = [part.split(";")[0].strip()[1:-1] for part in link.split(",")
              if 'rel="next"' in part]
    return url


async def walk(client, url: str, token: str) -> tuple[list[int], list]:
    """Follow rel="next" from ``url``; the ids seen and every answer."""
    ids, answers = [], []
    while url:
        resp = await client.get(url, headers=hdr(token))
        assert resp.status == 200, await resp.text()
        ids += [item["id"] for item in await resp.json()]
        answers.append(resp)
        link = next_link(resp)
        url = link.split("://", 1)[1].split("/", 1)[1] if link else None
        url = "/" + url if url else None
    return ids, answers


async def test_keyset_pages_reach_every_package_in_id_order(client, world) -> None:
    ids = await many_packages(world, 45)
    url = PACKAGES.format(pid=world.project_id) + f"?{KEYSET}&sort=asc&per_page=20"
    seen, answers = await walk(client, url, world.tokens["reporter"])
    assert seen == ids
    assert len(answers) == 3


async def test_keyset_link_names_the_last_id_with_id_after(client, world) -> None:
    ids = await many_packages(world, 5)
    resp = await client.get(PACKAGES.format(pid=world.project_id) + f"?{KEYSET}&sort=asc"
                            "&per_page=2", headers=hdr(world.tokens["reporter"]))
    link = resp.headers["Link"]
    assert link.endswith('>; rel="next"') and link.count("rel=") == 1
    assert f"id_after={ids[1]}" in link and "pagination=keyset" in link
    assert "page=" not in link.replace("per_page=", "")


async def test_keyset_pages_answer_no_offset_headers(client, world) -> None:
    await many_packages(world, 3)
    resp = await client.get(PACKAGES.format(pid=world.project_id) + f"?{KEYSET}",
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 200
    for name in ("X-Total", "X-Total-Pages", "X-Page", "X-Next-Page"):
        assert name not in resp.headers


async def test_keyset_last_page_has_no_link(client, world) -> None:
    ids = await many_packages(world, 4)
    resp = await client.get(PACKAGES.format(pid=world.project_id)
                            + f"?{KEYSET}&sort=asc&per_page=2&id_after={ids[1]}",
                            headers=hdr(world.tokens["reporter"]))
    assert [p["id"] for p in await resp.json()] == ids[2:]
    assert "Link" not in resp.headers


async def test_keyset_descending_pages_use_id_before(client, world) -> None:
    ids = await many_packages(world, 5)
    url = PACKAGES.format(pid=world.project_id) + f"?{KEYSET}&sort=desc&per_page=2"
    resp = await client.get(url, headers=hdr(world.tokens["reporter"]))
    assert f"id_before={ids[3]}" in resp.headers["Link"]
    seen, _ = await walk(client, url, world.tokens["reporter"])
    assert seen == ids[::-1]


async def test_keyset_pages_keep_the_filters(client, world) -> None:
    await many_packages(world, 3)
    wanted = [(await insert_package(world.conn, world.project_id, f"tool-{i}", "1.0"))["id"]
              for i in range(3)]
    url = (PACKAGES.format(pid=world.project_id)
           + f"?{KEYSET}&sort=asc&per_page=2&package_name=tool")
    seen, _ = await walk(client, url, world.tokens["reporter"])
    assert seen == wanted


async def test_keyset_without_order_by_id_answers_gitlabs_offset_pages(client, world) -> None:
    await many_packages(world, 3)
    resp = await client.get(PACKAGES.format(pid=world.project_id) + "?pagination=keyset",
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 200
    assert resp.headers["X-Total"] == "3" and resp.headers["X-Page"] == "1"


async def test_order_by_id_without_keyset_is_refused_as_gitlab_does(client, world) -> None:
    resp = await client.get(PACKAGES.format(pid=world.project_id) + "?order_by=id",
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 400
    assert await resp.json() == {"error": "order_by does not have a valid value"}


async def test_keyset_bound_that_is_no_integer_is_refused(client, world) -> None:
    for bad in ("abc", "١٢", "99999999999999999999"):
        resp = await client.get(PACKAGES.format(pid=world.project_id)
                                + f"?{KEYSET}&sort=asc&id_after={bad}",
                                headers=hdr(world.tokens["reporter"]))
        assert resp.status == 400
        assert await resp.json() == {"error": "id_after is invalid"}


async def test_keyset_group_list_spans_projects_in_id_order(client, world) -> None:
    group_id = await world.conn.fetchval("SELECT id FROM namespaces WHERE full_path = 'acme'")
    other = await project_in(world.conn, group_id, "other")
    first = await many_packages(world, 3)
    second = await many_packages(world, 3, other)
    third = await many_packages(world, 2)
    await group_member(world.conn, "acme", "reporter", 20)
    url = f"/api/v4/groups/{group_id}/packages?{KEYSET}&sort=asc&per_page=3"
    seen, _ = await walk(client, url, world.tokens["reporter"])
    assert seen == sorted(first + second + third)


async def test_keyset_package_files_need_no_order_by(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "many", "1.0",
                               files=tuple(f"f{i}.bin" for i in range(7)))
    url = (PACKAGES.format(pid=world.project_id)
           + f"/{pkg['id']}/package_files?pagination=keyset&sort=asc&per_page=3")
    seen, answers = await walk(client, url, world.tokens["reporter"])
    file_ids = [r["id"] for r in await world.conn.fetch(
        "SELECT id FROM package_files WHERE package_id = $1 ORDER BY id", pkg["id"])]
    assert seen == file_ids
    assert len(answers) == 3


async def test_python_gitlab_lists_every_package_with_keyset(gateway, world) -> None:
    ids = await many_packages(world, 130)
    gl = gitlab.Gitlab(gateway.url, private_token=world.tokens["reporter"],
                       pagination="keyset", order_by="id")

    def list_all() -> list[int]:
        project = gl.projects.get(world.project_id, lazy=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return [p.id for p in project.packages.list(get_all=True, per_page=50, sort="asc")]

    assert await asyncio.to_thread(list_all) == ids


# --- the offset limit --------------------------------------------------------------------------


async def test_offset_past_gitlabs_limit_is_refused_with_its_message(client, world) -> None:
    resp = await client.get(PACKAGES.format(pid=world.project_id) + "?page=2501&per_page=20",
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 405
    assert await resp.json() == {"error": (
        "Offset pagination has a maximum allowed offset of 50000 for requests that return "
        "objects of type Packages::Package. Remaining records can be retrieved using keyset "
        "pagination.")}


async def test_offset_up_to_the_limit_is_answered(client, world) -> None:
    await many_packages(world, 2)
    resp = await client.get(PACKAGES.format(pid=world.project_id) + "?page=500&per_page=100",
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 200
    assert await resp.json() == []


async def test_offset_limit_names_package_files_for_file_lists(client, world) -> None:
    pkg = await insert_package(world.conn, world.project_id, "one", "1.0", files=("a",))
    resp = await client.get(PACKAGES.format(pid=world.project_id)
                            + f"/{pkg['id']}/package_files?page=50001&per_page=1",
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 405
    assert "objects of type Packages::PackageFile." in (await resp.json())["error"]


async def test_offset_limit_applies_to_group_lists(client, world) -> None:
    group_id = await world.conn.fetchval("SELECT id FROM namespaces WHERE full_path = 'acme'")
    resp = await client.get(f"/api/v4/groups/{group_id}/packages?page=1000&per_page=51",
                            headers=hdr(world.admin_token))
    assert resp.status == 405


# --- the count limit ---------------------------------------------------------------------------


async def test_counts_stop_past_ten_thousand_as_gitlab_does(client, world) -> None:
    await many_packages(world, 10_001)
    resp = await client.get(PACKAGES.format(pid=world.project_id) + "?per_page=100",
                            headers=hdr(world.tokens["reporter"]))
    assert resp.status == 200
    assert "X-Total" not in resp.headers and "X-Total-Pages" not in resp.headers
    assert resp.headers["X-Next-Page"] == "2"
    assert 'rel="last"' not in resp.headers["Link"]


async def test_ten_thousand_are_still_counted(client, world) -> None:
    await many_packages(world, 10_000)
    resp = await client.get(PACKAGES.format(pid=world.project_id) + "?per_page=100",
                            headers=hdr(world.tokens["reporter"]))
    assert resp.headers["X-Total"] == "10000"
    assert resp.headers["X-Total-Pages"] == "100"


# --- GET /projects: keyset pages where GitLab offers them ----------------------------------------


async def some_projects(world: World, count: int) -> list[int]:
    group_id = await world.conn.fetchval("SELECT id FROM namespaces WHERE full_path = 'acme'")
    for i in range(count):
        await project_in(world.conn, group_id, f"extra-{i}")
    return [r["id"] for r in await world.conn.fetch("SELECT id FROM projects ORDER BY id")]


async def test_projects_keyset_pages_walk_every_project_by_id(client, world) -> None:
    ids = await some_projects(world, 4)
    url = "/api/v4/projects?pagination=keyset&order_by=id&sort=asc&per_page=2"
    seen, answers = await walk(client, url, world.admin_token)
    assert seen == ids
    assert f"id_after={ids[1]}" in answers[0].headers["Link"]
    assert "X-Total" not in answers[0].headers
    assert "Link" not in answers[-1].headers


async def test_projects_keyset_pages_descend_by_default(client, world) -> None:
    ids = await some_projects(world, 3)
    url = "/api/v4/projects?pagination=keyset&order_by=id&per_page=2"
    seen, answers = await walk(client, url, world.admin_token)
    assert seen == ids[::-1]
    assert f"id_before={ids[-2]}" in answers[0].headers["Link"]


async def test_projects_keyset_in_another_order_is_gitlabs_405(client, world) -> None:
    resp = await client.get("/api/v4/projects?pagination=keyset", headers=hdr(world.admin_token))
    assert resp.status == 405
    assert await resp.json() == {
        "error": "Keyset pagination is not yet available for this type of request"}


async def test_projects_id_after_filters_offset_pages_too(client, world) -> None:
    ids = await some_projects(world, 3)
    resp = await client.get(f"/api/v4/projects?order_by=id&sort=asc&id_after={ids[1]}",
                            headers=hdr(world.admin_token))
    assert [p["id"] for p in await resp.json()] == ids[2:]
    assert resp.headers["X-Total"] == str(len(ids) - 2)


# --- deep offsets into groups of many projects ---------------------------------------------------


async def test_deep_group_pages_read_flat_answer_the_same_pages(client, world,
                                                                monkeypatch) -> None:
    """Past a bound on the rows the per-project form would read, the list is read in one flat
    scan: the pages must be the same either way."""
    group_id = await world.conn.fetchval("SELECT id FROM namespaces WHERE full_path = 'acme'")
    for i in range(3):
        other = await project_in(world.conn, group_id, f"flat-{i}")
        await many_packages(world, 7, other)
    await many_packages(world, 5)
    url = f"/api/v4/groups/{group_id}/packages?order_by=project_path&sort=desc&per_page=4"

    async def pages() -> list[list[int]]:
        out = []
        for page in range(1, 9):
            resp = await client.get(f"{url}&page={page}", headers=hdr(world.admin_token))
            assert resp.status == 200, await resp.text()
            out.append([p["id"] for p in await resp.json()])
        return out

    per_project = await pages()
    monkeypatch.setattr(q, "_LATERAL_ROWS_MAX", 0)
    assert await pages() == per_project
    assert sum(map(len, per_project)) == 26
