"""GitLab's package protection rules API: fields, validation answers, rights, and
python-gitlab's ``project.package_protection_rules`` against a gateway process."""

from __future__ import annotations

import gitlab
import pytest

from tests.conftest import GatewayProcess, World
from tests.package_helpers import hdr

RULES = "/api/v4/projects/{pid}/packages/protection/rules"


def rules_url(world: World, rule_id: object | None = None) -> str:
    url = RULES.format(pid=world.project_id)
    return url if rule_id is None else f"{url}/{rule_id}"


async def create(client, world: World, token: str | None = None, **fields) -> tuple[int, dict]:
    resp = await client.post(rules_url(world), json=fields,
                             headers=hdr(token or world.tokens["maintainer"]))
    return resp.status, await resp.json()


async def test_create_answers_gitlabs_entity(client, world: World) -> None:
    status, body = await create(client, world, package_name_pattern="tool-*",
                                package_type="generic", minimum_access_level_for_push="owner")
    assert status == 201
    assert body == {"id": body["id"], "project_id": world.project_id,
                    "package_name_pattern": "tool-*", "package_type": "generic",
                    "minimum_access_level_for_delete": None,
                    "minimum_access_level_for_push": "owner"}


async def test_list_answers_the_projects_rules_in_order(client, world: World) -> None:
    await create(client, world, package_name_pattern="a*", package_type="generic",
                 minimum_access_level_for_push="maintainer")
    await create(client, world, package_name_pattern="b*", package_type="generic",
                 minimum_access_level_for_delete="admin")
    resp = await client.get(rules_url(world), headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 200
    body = await resp.json()
    assert [(r["package_name_pattern"], r["minimum_access_level_for_push"],
             r["minimum_access_level_for_delete"]) for r in body] == [
        ("a*", "maintainer", None), ("b*", None, "admin")]


async def test_same_pattern_and_type_is_taken(client, world: World) -> None:
    fields = {"package_name_pattern": "p*", "package_type": "generic",
              "minimum_access_level_for_push": "owner"}
    assert (await create(client, world, **fields))[0] == 201
    status, body = await create(client, world, **fields)
    assert (status, body) == (422, {"message": {"error": [
        "Package name pattern has already been taken"]}})
    # Another type may use the same pattern.
    assert (await create(client, world, **{**fields, "package_type": "maven"}))[0] == 201


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"package_type": "generic", "minimum_access_level_for_push": "owner"},
         "package_name_pattern is missing"),
        ({"package_name_pattern": "x", "minimum_access_level_for_push": "owner"},
         "package_type is missing"),
        ({"package_name_pattern": "x", "package_type": "rubygems",
          "minimum_access_level_for_push": "owner"}, "package_type does not have a valid value"),
        ({"package_name_pattern": "x", "package_type": "generic",
          "minimum_access_level_for_push": "developer"},
         "minimum_access_level_for_push does not have a valid value"),
        ({"package_name_pattern": "x", "package_type": "generic",
          "minimum_access_level_for_delete": "maintainer"},
         "minimum_access_level_for_delete does not have a valid value"),
    ],
)
async def test_grape_validation_is_a_400(client, world: World, fields: dict, error: str) -> None:
    status, body = await create(client, world, **fields)
    assert (status, body) == (400, {"error": error})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"package_name_pattern": "x", "package_type": "generic"},
         "A rule must have at least a minimum access role for push or delete."),
        ({"package_name_pattern": "x" * 256, "package_type": "generic",
          "minimum_access_level_for_push": "owner"},
         "Package name pattern is too long (maximum is 255 characters)"),
        ({"package_name_pattern": "@Scope/Not Valid", "package_type": "npm",
          "minimum_access_level_for_push": "owner"},
         "Package name pattern should be a valid NPM package name with optional wildcard "
         "characters."),
    ],
)
async def test_model_validation_is_a_422(client, world: World, fields: dict,
                                         message: str) -> None:
    status, body = await create(client, world, **fields)
    assert (status, body) == (422, {"message": {"error": [message]}})


async def test_patch_changes_only_the_fields_given(client, world: World) -> None:
    _, rule = await create(client, world, package_name_pattern="x*", package_type="generic",
                           minimum_access_level_for_push="maintainer")
    resp = await client.patch(rules_url(world, rule["id"]),
                              json={"minimum_access_level_for_delete": "owner"},
                              headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 200
    assert await resp.json() == {**rule, "minimum_access_level_for_delete": "owner"}
    # Clearing both levels is refused; nothing changes.
    resp = await client.patch(rules_url(world, rule["id"]),
                              json={"minimum_access_level_for_push": None,
                                    "minimum_access_level_for_delete": None},
                              headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 422


async def test_delete_answers_204_then_404(client, world: World) -> None:
    _, rule = await create(client, world, package_name_pattern="x*", package_type="generic",
                           minimum_access_level_for_push="owner")
    url = rules_url(world, rule["id"])
    resp = await client.delete(url, headers=hdr(world.tokens["maintainer"]))
    assert resp.status == 204
    resp = await client.delete(url, headers=hdr(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (404, {"message": "404 Not found"})


async def test_rule_id_that_is_not_a_number_is_a_400(client, world: World) -> None:
    resp = await client.delete(rules_url(world, "invalid"),
                               headers=hdr(world.tokens["maintainer"]))
    assert (resp.status, await resp.json()) == (
        400, {"error": "package_protection_rule_id is invalid"})


async def test_rule_of_another_project_is_not_found(client, world: World) -> None:
    _, rule = await create(client, world, package_name_pattern="x*", package_type="generic",
                           minimum_access_level_for_push="owner")
    other = await world.project("acme", "other")
    resp = await client.delete(f"{RULES.format(pid=other)}/{rule['id']}",
                               headers=hdr(world.admin_token))
    assert resp.status == 404


def test_python_gitlab_manages_rules_as_its_functional_test_does(
    gateway: GatewayProcess, world: World
) -> None:
    """The steps of python-gitlab's tests/functional/api/test_packages.py for protection
    rules (feature flag, list, create, update, delete), through python-gitlab itself."""
    gl = gitlab.Gitlab(gateway.url, private_token=world.admin_token, timeout=30)
    gl.features.set(name="packages_protected_packages", value=True)
    project = gl.projects.get(world.project_id)
    assert project.package_protection_rules.list() == []
    rule = project.package_protection_rules.create({
        "package_name_pattern": "v*", "package_type": "npm",
        "minimum_access_level_for_push": "maintainer",
    })
    assert isinstance(rule, gitlab.v4.objects.ProjectPackageProtectionRule)
    assert rule.package_type == "npm"
    rule.minimum_access_level_for_push = "owner"
    rule.save()
    [listed] = project.package_protection_rules.list()
    assert listed.minimum_access_level_for_push == "owner"
    rule.delete()
    assert project.package_protection_rules.list() == []
    # The changes are in the project's audit events, read through python-gitlab too.
    assert [e.event_name for e in project.audit_events.list(get_all=True)] == [
        "package_protection_rule_deleted", "package_protection_rule_updated",
        "package_protection_rule_created"]
