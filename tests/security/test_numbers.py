"""Hole 7: every number a client sends is read once (``gateway.numbers``): digits that are not
ASCII (``²``, Arabic-Indic ``٣``) and values past int64 get GitLab's 400 or 404 on every route,
signed in or not, never a 500 and never a traceback in the log.

Grape reads typed parameters with Ruby's ``Integer()`` (400 ``<name> is invalid``); a record
looked up by an id no row can have is not found (404); ``:id`` of a project or group is an id
only when it is ASCII digits, else a path that names nothing (404).
"""

from __future__ import annotations

import logging
import re

import pytest

from gateway.app import create_app
from gateway.config import Settings
from tests.conftest import World
from tests.security.common import PROJECT_NOT_FOUND, RECORD_NOT_FOUND, USER_NOT_FOUND, h

SUPERSCRIPT_TWO = "%C2%B2"  # "²".isdigit() is True in Python
ARABIC_THREE = "%D9%A3"  # "٣"
PAST_INT64 = "99999999999999999999"
BAD_NUMBERS = [SUPERSCRIPT_TWO, ARABIC_THREE, PAST_INT64, "-" + PAST_INT64, "1e3"]
BAD_BODY_NUMBERS = ["²", "٣", PAST_INT64, 10**20, 1.5, True, {"a": 1}]
BODY_NUMBER_FIELDS = ("user_id", "namespace_id", "parent_id", "access_level", "expires_in",
                      "projects_limit", "min_access_level", "page", "per_page")


def _routes() -> list[tuple[str, str]]:
    app = create_app(Settings(database_url="postgresql://unused", s3_bucket="unused"))
    # The API's routes: the web UI (/-/ui/) signs in by cookie and has its own tests, and
    # OPTIONS (tus's capability discovery) answers without looking at the path's ids.
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method not in ("HEAD", "OPTIONS")
              and r.resource.canonical.startswith("/api/")}
    return sorted(routes)


ROUTES = _routes()
NUMBER_PARAMS = ("id", "package_id", "package_file_id", "user_id", "token_id", "job_token_id",
                 "audit_event_id", "package_protection_rule_id", "file_id")


def _fill(template: str, world: World, bad: tuple[str, str] | None) -> str:
    """The template with valid values, except ``bad`` = (param, value)."""
    groups = template.startswith("/api/v4/groups")

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if bad is not None and name == bad[0]:
            return bad[1]
        return {
            "id": "acme" if groups else str(world.project_id), "tail": "pkg/1.0/f.txt",
            "source": "projects", "all": "all", "package_id": "1", "package_file_id": "1",
            "user_id": "2", "token_id": "1", "job_token_id": "1", "audit_event_id": "1",
            "package_protection_rule_id": "1", "file_id": "1", "session_id": "1", "sep": "/",
            "name": "packages_protected_packages",
        }[name]

    return re.sub(r"\{([^}]+)\}", value, template)


# One test per route and parameter, trying every bad number on one gateway: the claim is the
# route's, and building a gateway per number would cost the suite minutes.
CASES = [
    (method, template, param)
    for method, template in ROUTES
    for param in re.findall(r"\{(\w+)", template) if param in NUMBER_PARAMS
]
ANONYMOUS_NUMBERS = (SUPERSCRIPT_TWO, ARABIC_THREE, PAST_INT64)


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize(("method", "template", "param"), CASES)
async def test_bad_numbers_in_paths_are_400_or_404(
    client, world: World, caplog: pytest.LogCaptureFixture, method: str, template: str,
    param: str,
) -> None:
    await _path_cases(client, world, caplog, method, template, param, BAD_NUMBERS,
                      signed_in=True)


@pytest.mark.parametrize(("method", "template", "param"), CASES)
async def test_bad_numbers_in_paths_unauthenticated_are_4xx(
    client, world: World, caplog: pytest.LogCaptureFixture, method: str, template: str,
    param: str,
) -> None:
    await _path_cases(client, world, caplog, method, template, param, ANONYMOUS_NUMBERS,
                      signed_in=False)


async def _path_cases(client, world: World, caplog: pytest.LogCaptureFixture, method: str,
                      template: str, param: str, numbers: tuple[str, ...] | list[str], *,
                      signed_in: bool) -> None:
    caplog.set_level(logging.INFO)
    headers = h(world.admin_token) if signed_in else {}
    expected = {400, 404} if signed_in else {400, 401, 403, 404}
    wrong = []
    for number in numbers:
        url = _fill(template, world, (param, number))
        resp = await client.request(method, url, headers=headers,
                                    data=b"" if method == "PUT" else None)
        if resp.status not in expected or resp.content_type != "application/json":
            wrong.append((url, resp.status, resp.content_type, await resp.text()))
    assert not wrong
    _no_error_logged(caplog)


GET_ROUTES = [t for m, t in ROUTES if m == "GET"]
BAD_PAGES = (f"page={PAST_INT64}", f"per_page={SUPERSCRIPT_TWO}", f"page={ARABIC_THREE}",
             "page=9223372036854775807")


@pytest.mark.parametrize("template", GET_ROUTES)
async def test_bad_page_numbers_are_never_a_500(client, world: World, caplog,
                                                template: str) -> None:
    caplog.set_level(logging.INFO)
    wrong = []
    for query in BAD_PAGES:
        url = _fill(template, world, None) + "?" + query
        resp = await client.get(url, headers=h(world.admin_token), allow_redirects=False)
        if resp.status >= 500:
            wrong.append((url, resp.status, await resp.text()))
    assert not wrong
    _no_error_logged(caplog)


BODY_ROUTES = [(m, t) for m, t in ROUTES if m in ("POST", "PUT") and "generic" not in t]


@pytest.mark.parametrize(("method", "template"), BODY_ROUTES)
async def test_bad_numbers_in_bodies_are_400_or_404(client, world: World, caplog, method: str,
                                                    template: str) -> None:
    caplog.set_level(logging.INFO)
    url = _fill(template, world, None)
    wrong = []
    for number in BAD_BODY_NUMBERS:
        body = {"name": "n", "path": "n", "username": "n", "email": "n@example.com",
                "password": "S3cret-pass!", "scopes": ["api"],
                **{field: number for field in BODY_NUMBER_FIELDS}}
        resp = await client.request(method, url, json=body, headers=h(world.admin_token))
        # Routes that take none of these fields ignore them (as Grape does undeclared ones).
        if resp.status >= 500 or resp.content_type != "application/json":
            wrong.append((url, number, resp.status, await resp.text()))
    assert not wrong
    _no_error_logged(caplog)


# --- the cases the issue names, with GitLab's bodies ---------------------------------------------


async def test_a_package_id_past_int64_is_not_found(client, world: World) -> None:
    resp = await client.get(f"/api/v4/projects/{world.project_id}/packages/{PAST_INT64}",
                            headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (404, RECORD_NOT_FOUND)


async def test_a_non_ascii_package_id_is_invalid(client, world: World) -> None:
    resp = await client.get(f"/api/v4/projects/{world.project_id}/packages/{SUPERSCRIPT_TWO}",
                            headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {"error": "package_id is invalid"})


async def test_a_page_past_int64_is_invalid(client, world: World) -> None:
    resp = await client.get(f"/api/v4/projects/{world.project_id}/packages?page={PAST_INT64}",
                            headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {"error": "page is invalid"})


@pytest.mark.parametrize("ref", [SUPERSCRIPT_TWO, ARABIC_THREE, PAST_INT64])
async def test_a_project_named_by_odd_digits_is_not_found(client, world: World,
                                                         ref: str) -> None:
    resp = await client.get(f"/api/v4/projects/{ref}/packages", headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (404, PROJECT_NOT_FOUND)


async def test_generic_download_of_a_superscript_project_is_anonymous_401(client,
                                                                         world: World) -> None:
    resp = await client.get(f"/api/v4/projects/{SUPERSCRIPT_TWO}/packages/generic/p/1/f.txt")
    assert resp.status == 401


@pytest.mark.parametrize("user_id", ["²", PAST_INT64, "abc"])
async def test_a_member_user_id_that_names_nobody_is_user_not_found(client, world: World,
                                                                    user_id: str) -> None:
    resp = await client.post(f"/api/v4/projects/{world.project_id}/members",
                             data={"user_id": user_id, "access_level": "30"},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (404, USER_NOT_FOUND)


async def test_a_non_ascii_namespace_id_is_invalid(client, world: World) -> None:
    resp = await client.post("/api/v4/projects", data={"name": "p", "namespace_id": "²"},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {"error": "namespace_id is invalid"})


async def test_a_namespace_id_past_int64_is_not_valid(client, world: World) -> None:
    resp = await client.post("/api/v4/projects", data={"name": "p", "namespace_id": PAST_INT64},
                             headers=h(world.admin_token))
    assert (resp.status, await resp.json()) == (400, {"message": {"namespace": ["is not valid"]}})
