"""The group's duplicate policy: its settings endpoint, GitLab's matching rule, and the
refusal under races (also across two gateway processes)."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from gateway import auth
from gateway.packages.duplicates import duplicates_allowed
from tests.conftest import start_gateway
from tests.package_helpers import (
    bucket_keys,
    generic_url,
    group_member,
    hdr,
    project_in,
    subgroup,
)

SETTINGS = "/api/v4/groups/{group}/packages/settings"
DUPLICATE = {"message": "400 Bad request - Duplicate package is not allowed"}


async def set_policy(client, world, group: str = "acme", **fields) -> None:
    resp = await client.put(SETTINGS.format(group=group), json=fields,
                            headers=hdr(world.admin_token))
    assert resp.status == 200, await resp.text()


# --- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "regex", "name", "version", "expected"),
    [
        (True, "", "pkg", "1.0", True),
        (False, "", "pkg", "1.0", False),
        (False, ".*age.*", "mypackage", "1.2.3", True),   # exception relaxes a refusal
        (True, r".*2\.3.*", "mypackage", "1.2.3", False),  # exception inverts an allowance
        (True, "pkg", "mypkg", "1.0", True),               # anchored: no partial match
        (False, r"9\.9\.9|8\.8\.8", "p", "9.9.9-rc", True),  # top-level | binds loosely
        (False, r"9\.9\.9|8\.8\.8", "p", "1.8.8.8", True),
        (False, r"9\.9\.9|8\.8\.8", "p", "1.9.9.9-8.8.8x", False),
        (False, "[[:digit:].]+", "p", "1.2.3", True),      # RE2's POSIX classes
        (False, r"\pN+", "p", "123", True),                # RE2's Unicode classes
    ],
)
def test_duplicates_allowed_follows_gitlab(allowed: bool, regex: str, name: str, version: str,
                                           expected: bool) -> None:
    assert duplicates_allowed(allowed, regex, name, version) is expected


def test_pathological_pattern_is_matched_in_linear_time() -> None:
    # A backtracking engine would take ages on this; RE2 answers at once.
    assert not duplicates_allowed(False, "(a+)+b", "pkg", "a" * 5000 + "c")


# --- the settings endpoint -------------------------------------------------------------------


async def test_fresh_group_has_gitlabs_defaults(client, world) -> None:
    resp = await client.get(SETTINGS.format(group="acme"), headers=hdr(world.admin_token))
    assert resp.status == 200
    assert await resp.json() == {"generic_duplicates_allowed": True,
                                 "generic_duplicate_exception_regex": ""}


async def test_put_changes_only_the_fields_given(client, world) -> None:
    await set_policy(client, world, generic_duplicate_exception_regex=r"1\..*")
    resp = await client.put(SETTINGS.format(group="acme"),
                            data={"generic_duplicates_allowed": "false"},
                            headers=hdr(world.admin_token))
    assert await resp.json() == {"generic_duplicates_allowed": False,
                                 "generic_duplicate_exception_regex": r"1\..*"}


async def test_put_by_group_id_works_too(client, world) -> None:
    group_id = await world.conn.fetchval("SELECT id FROM namespaces WHERE full_path = 'acme'")
    resp = await client.put(SETTINGS.format(group=group_id),
                            json={"generic_duplicates_allowed": False},
                            headers=hdr(world.admin_token))
    assert (await resp.json())["generic_duplicates_allowed"] is False


async def test_invalid_regex_is_refused_and_nothing_changes(client, world) -> None:
    resp = await client.put(SETTINGS.format(group="acme"),
                            json={"generic_duplicates_allowed": False,
                                  "generic_duplicate_exception_regex": "["},
                            headers=hdr(world.admin_token))
    assert resp.status == 400
    assert await resp.json() == {"message": {"generic_duplicate_exception_regex": [
        "not valid RE2 syntax: missing ]: ["]}}
    got = await client.get(SETTINGS.format(group="acme"), headers=hdr(world.admin_token))
    assert (await got.json())["generic_duplicates_allowed"] is True


async def test_backreference_is_not_re2_and_is_refused(client, world) -> None:
    resp = await client.put(SETTINGS.format(group="acme"),
                            json={"generic_duplicate_exception_regex": r"(a)\1"},
                            headers=hdr(world.admin_token))
    assert resp.status == 400


async def test_regex_over_255_characters_is_refused(client, world) -> None:
    resp = await client.put(SETTINGS.format(group="acme"),
                            json={"generic_duplicate_exception_regex": "a" * 256},
                            headers=hdr(world.admin_token))
    assert resp.status == 400
    assert await resp.json() == {"message": {"generic_duplicate_exception_regex": [
        "is too long (maximum is 255 characters)"]}}


async def test_non_boolean_toggle_is_refused(client, world) -> None:
    resp = await client.put(SETTINGS.format(group="acme"),
                            json={"generic_duplicates_allowed": "maybe"},
                            headers=hdr(world.admin_token))
    assert resp.status == 400
    assert await resp.json() == {"error": "generic_duplicates_allowed is invalid"}


async def test_group_developer_may_not_change_settings(client, world) -> None:
    await group_member(world.conn, "acme", "developer", auth.DEVELOPER)
    resp = await client.put(SETTINGS.format(group="acme"),
                            json={"generic_duplicates_allowed": False},
                            headers=hdr(world.tokens["developer"]))
    assert resp.status == 403
    assert await resp.json() == {"message": "403 Forbidden"}


async def test_group_maintainer_may_change_settings(client, world) -> None:
    await group_member(world.conn, "acme", "maintainer", auth.MAINTAINER)
    resp = await client.put(SETTINGS.format(group="acme"),
                            json={"generic_duplicates_allowed": False},
                            headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 200


async def test_settings_of_invisible_group_are_group_not_found(client, world) -> None:
    resp = await client.get(SETTINGS.format(group="acme"), headers=hdr(world.tokens["outsider"]))
    assert resp.status == 404
    assert await resp.json() == {"message": "404 Group Not Found"}


async def test_anonymous_caller_gets_401_on_settings(client, world) -> None:
    resp = await client.get(SETTINGS.format(group="acme"))
    assert resp.status == 401


# --- uploads under the policy ----------------------------------------------------------------


async def test_forbidden_duplicate_gets_gitlabs_400_and_stores_nothing(client, world, s3,
                                                                       settings) -> None:
    await set_policy(client, world, generic_duplicates_allowed=False)
    token = hdr(world.tokens["developer"])
    assert (await client.put(generic_url(world.project_id), data=b"a", headers=token)).status \
        == 201
    keys_before = bucket_keys(s3, settings.s3_bucket)
    resp = await client.put(generic_url(world.project_id), data=b"b", headers=token)
    assert resp.status == 400
    assert await resp.json() == DUPLICATE
    assert bucket_keys(s3, settings.s3_bucket) == keys_before
    assert await world.conn.fetchval("SELECT count(*) FROM package_files") == 1


async def test_forbidden_duplicates_still_take_other_file_names(client, world) -> None:
    await set_policy(client, world, generic_duplicates_allowed=False)
    token = hdr(world.tokens["developer"])
    assert (await client.put(generic_url(world.project_id), data=b"a", headers=token)).status \
        == 201
    resp = await client.put(generic_url(world.project_id, file="other.txt"), data=b"b",
                            headers=token)
    assert resp.status == 201


async def test_exception_regex_on_version_allows_the_duplicate(client, world) -> None:
    await set_policy(client, world, generic_duplicates_allowed=False,
                     generic_duplicate_exception_regex=r"1\.4\..*")
    token = hdr(world.tokens["developer"])
    for _ in range(2):
        resp = await client.put(generic_url(world.project_id, version="1.4.0"), data=b"a",
                                headers=token)
        assert resp.status == 201


async def test_exception_regex_on_name_refuses_when_duplicates_allowed(client, world) -> None:
    await set_policy(client, world, generic_duplicate_exception_regex="release-.*")
    token = hdr(world.tokens["developer"])
    url = generic_url(world.project_id, name="release-tools")
    assert (await client.put(url, data=b"a", headers=token)).status == 201
    resp = await client.put(url, data=b"b", headers=token)
    assert (resp.status, await resp.json()) == (400, DUPLICATE)


async def test_only_the_projects_own_group_decides(client, world) -> None:
    # acme forbids duplicates, acme/sub (the project's immediate namespace) allows them.
    await set_policy(client, world, generic_duplicates_allowed=False)
    sub = await subgroup(world.conn, "acme", "sub")
    pid = await project_in(world.conn, sub, "deep")
    developer = await world.conn.fetchval("SELECT id FROM users WHERE username = 'developer'")
    await world.member(developer, auth.DEVELOPER, pid)
    token = hdr(world.tokens["developer"])
    for _ in range(2):
        assert (await client.put(generic_url(pid), data=b"a", headers=token)).status == 201


async def test_deleted_file_no_longer_counts_as_duplicate(client, world) -> None:
    await set_policy(client, world, generic_duplicates_allowed=False)
    token = hdr(world.tokens["maintainer"])
    assert (await client.put(generic_url(world.project_id), data=b"a", headers=token)).status \
        == 201
    assert (await client.delete(generic_url(world.project_id), headers=token)).status == 204
    assert (await client.put(generic_url(world.project_id), data=b"b", headers=token)).status \
        == 201


async def test_duplicate_committed_during_streaming_is_refused_at_commit(client, world, s3,
                                                                         settings) -> None:
    await set_policy(client, world, generic_duplicates_allowed=False)
    token = hdr(world.tokens["developer"])
    release = asyncio.Event()

    async def slow_body():
        yield b"first half "
        await release.wait()
        yield b"second half"

    # The slow upload passes the early check (no file yet) and starts streaming...
    slow = asyncio.create_task(client.put(generic_url(world.project_id), data=slow_body(),
                                          headers=token))
    await asyncio.sleep(0.5)
    # ...while another upload of the same file commits.
    assert (await client.put(generic_url(world.project_id), data=b"fast", headers=token)).status \
        == 201
    release.set()
    resp = await asyncio.wait_for(slow, 30)
    assert (resp.status, await resp.json()) == (400, DUPLICATE)
    stored = await world.conn.fetch("SELECT object_key FROM package_files")
    assert bucket_keys(s3, settings.s3_bucket) == {r["object_key"] for r in stored}


async def test_twelve_racing_uploads_on_two_gateways_store_exactly_one(
    gateway, world, settings, tmp_path, s3,
) -> None:
    second = start_gateway(settings, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            put = await http.put(gateway.url + SETTINGS.format(group="acme"),
                                 json={"generic_duplicates_allowed": False},
                                 headers=hdr(world.admin_token))
            assert put.status == 200
            bodies = [os.urandom(256 * 1024) for _ in range(12)]

            async def upload(i: int) -> tuple[int, dict]:
                base = (gateway, second)[i % 2].url
                async with http.put(base + generic_url(world.project_id, version="9.0.0"),
                                    data=bodies[i], headers=hdr(world.tokens["developer"])) as r:
                    return r.status, await r.json()

            results = await asyncio.wait_for(asyncio.gather(*map(upload, range(12))), 120)
    finally:
        second.stop()
    assert sorted(status for status, _ in results) == [201] + [400] * 11
    assert all(body == DUPLICATE for status, body in results if status == 400)
    stored = await world.conn.fetch("SELECT object_key FROM package_files")
    assert len(stored) == 1
    assert await world.conn.fetchval("SELECT count(*) FROM packages") == 1
    assert bucket_keys(s3, settings.s3_bucket) == {stored[0]["object_key"]}
