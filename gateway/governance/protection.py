"""GitLab's package protection rules (``Packages::Protection::Rule`` and the services under
``app/services/packages/protection/``): the rules API's validation and changes, and the checks
a push and a delete pass.

Who a rule stops (``CheckRuleExistenceService``): an administrator never; a user (a personal or
resource access token, or a CI job token, which acts for its user) when a rule matching the
package name has a minimum for the action above the user's role in the project; a deploy token,
which has no role, whenever any rule of the package type matches the name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from gateway.auth import Principal
from gateway.db import governance as q
from gateway.db.pool import Database
from gateway.enums import MAINTAINER, OWNER, PACKAGE_TYPE_NAME, PACKAGE_TYPES
from gateway.errors import Forbidden, GatewayError, RecordNotFound
from gateway.governance import audit
from gateway.identity.policy import ProjectAccess
from gateway.models import ProtectionRule

ADMIN = 60  # Gitlab::Access::ADMIN, above every member role
# Packages::Protection::Rule's enums.
RULE_PACKAGE_TYPES = ("conan", "generic", "helm", "maven", "npm", "nuget", "pypi")
PUSH_LEVELS = {"maintainer": MAINTAINER, "owner": OWNER, "admin": ADMIN}
DELETE_LEVELS = {"owner": OWNER, "admin": ADMIN}
LEVEL_NAMES = {MAINTAINER: "maintainer", OWNER: "owner", ADMIN: "admin"}
PATTERN_MAX = 255
GENERIC = PACKAGE_TYPES["generic"]

# Gitlab::Regex::Packages::Protection::Rules: npm names (an optional @scope/) and PyPI names,
# each with `*` wildcards, or a lone `*`.
_NAMESPACE = r"[a-zA-Z0-9_.*][a-zA-Z0-9_.*-]*"
_NPM_PATTERN = re.compile(rf"\A(?:\*|(?:@{_NAMESPACE}/)?[-+._a-zA-Z0-9*]+)\Z")
_PYPI_PATTERN = re.compile(r"\A(?:\*|[a-zA-Z0-9*](?:[-._a-zA-Z0-9*]*[a-zA-Z0-9*])?)\Z")


class PackageProtected(Forbidden):
    def __init__(self) -> None:
        super().__init__("Package protected.")


class DeletionProtected(Forbidden):
    def __init__(self) -> None:
        super().__init__("Package is deletion protected.")


class RuleInvalid(GatewayError):
    """``render_api_error!({ error: messages }, 422)``: the model's full messages."""

    status = 422

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))

    def body(self) -> dict[str, object]:
        return {"message": {"error": self.messages}}


@dataclass(frozen=True, slots=True)
class Actor:
    """What a protection rule looks at: a deploy token, an administrator, or a role (and who
    it is, for the audit event of the change)."""

    deploy_token: bool = False
    admin: bool = False
    level: int = 0
    # Who it is, for audit events; None: the gateway itself.
    principal: Principal | None = None

    @classmethod
    def of(cls, who: Principal, access: ProjectAccess) -> Actor:
        return cls(deploy_token=who.kind == "deploy_token", admin=who.is_admin,
                   level=access.level, principal=who)


# The gateway itself (retention): no rule applies.
SYSTEM = Actor(admin=True)


async def _protected(conn: asyncpg.Connection, action: str, actor: Actor, project_id: int,
                     package_name: str) -> bool:
    if actor.admin or not package_name:
        return False
    if actor.deploy_token:
        return await q.any_rule_matches(conn, project_id, GENERIC, package_name)
    return await q.protected_for(conn, action, project_id, GENERIC, package_name,
                                 actor.level)


async def refuse_protected_push(conn: asyncpg.Connection, actor: Actor, project_id: int,
                                package_name: str) -> None:
    """Inside a transaction (the commit's): GitLab's ``403 Package protected.``."""
    if await _protected(conn, "push", actor, project_id, package_name):
        raise PackageProtected()


async def refuse_protected_delete(conn: asyncpg.Connection, actor: Actor, project_id: int,
                                  package_name: str) -> None:
    if await _protected(conn, "delete", actor, project_id, package_name):
        raise DeletionProtected()


async def check_push(db: Database, actor: Actor, project_id: int, package_name: str) -> None:
    """Before a byte of the body is read; the commit checks again in its transaction."""
    async with db.connection() as conn:
        await refuse_protected_push(conn, actor, project_id, package_name)


# --- the rules API -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleChange:
    """The fields a create or an update sets (``None``: not given; levels may be given as
    ``None`` to clear them, hence the ``*_given`` flags)."""

    package_name_pattern: str | None = None
    package_type: str | None = None
    push: str | None = None
    push_given: bool = False
    delete: str | None = None
    delete_given: bool = False


def _validation_errors(pattern: str, package_type: str, push: int | None,
                       delete: int | None) -> list[str]:
    """Packages::Protection::Rule's validations, as their full messages (uniqueness aside)."""
    errors = []
    if not pattern.strip():
        errors.append("Package name pattern can't be blank")
    if len(pattern) > PATTERN_MAX:
        errors.append(f"Package name pattern is too long (maximum is {PATTERN_MAX} characters)")
    if package_type == "npm" and not _NPM_PATTERN.match(pattern):
        errors.append("Package name pattern should be a valid NPM package name with optional "
                      "wildcard characters.")
    if package_type == "pypi" and not _PYPI_PATTERN.match(pattern):
        errors.append("Package name pattern should be a valid PyPI package name with optional "
                      "wildcard characters.")
    if push is None and delete is None:
        errors.append("A rule must have at least a minimum access role for push or delete.")
    return errors


async def list_rules(db: Database, project_id: int) -> list[ProtectionRule]:
    async with db.connection() as conn:
        return await q.list_rules(conn, project_id)


async def _audit(conn: asyncpg.Connection, who: Principal, rule: ProtectionRule,
                 verb: str) -> None:
    await audit.record(
        conn, who, f"package_protection_rule_{verb}", entity_type="Project",
        entity_id=rule.project_id,
        message=f"{verb.capitalize()} package protection rule {rule.package_name_pattern!r}",
        target=audit.Target("Packages::Protection::Rule", rule.id, rule.package_name_pattern),
        package_type=PACKAGE_TYPE_NAME[rule.package_type],
        minimum_access_level_for_push=level_name(rule.minimum_access_level_for_push),
        minimum_access_level_for_delete=level_name(rule.minimum_access_level_for_delete))


async def create_rule(db: Database, who: Principal, project_id: int, change: RuleChange
                      ) -> ProtectionRule:
    pattern = change.package_name_pattern or ""
    package_type = change.package_type or "generic"
    push = PUSH_LEVELS[change.push] if change.push else None
    delete = DELETE_LEVELS[change.delete] if change.delete else None
    errors = _validation_errors(pattern, package_type, push, delete)
    async with db.transaction() as conn:
        type_id = PACKAGE_TYPES[package_type]
        if await q.rule_taken(conn, project_id, type_id, pattern, None):
            errors.insert(0, "Package name pattern has already been taken")
        if errors:
            raise RuleInvalid(errors)
        rule = await q.insert_rule(conn, project_id, pattern, type_id, push, delete)
        if rule is None:  # taken by a concurrent create
            raise RuleInvalid(["Package name pattern has already been taken"])
        await _audit(conn, who, rule, "created")
    return rule


async def update_rule(db: Database, who: Principal, project_id: int, rule_id: int,
                      change: RuleChange) -> ProtectionRule:
    async with db.transaction() as conn:
        rule = await q.get_rule(conn, project_id, rule_id)
        if rule is None:
            raise RecordNotFound()
        pattern = (change.package_name_pattern if change.package_name_pattern is not None
                   else rule.package_name_pattern)
        type_name = change.package_type or PACKAGE_TYPE_NAME[rule.package_type]
        push = (PUSH_LEVELS.get(change.push or "") if change.push_given
                else rule.minimum_access_level_for_push)
        delete = (DELETE_LEVELS.get(change.delete or "") if change.delete_given
                  else rule.minimum_access_level_for_delete)
        errors = _validation_errors(pattern, type_name, push, delete)
        type_id = PACKAGE_TYPES[type_name]
        if await q.rule_taken(conn, project_id, type_id, pattern, rule_id):
            errors.insert(0, "Package name pattern has already been taken")
        if errors:
            raise RuleInvalid(errors)
        try:
            updated = await q.update_rule(conn, project_id, rule_id, pattern, type_id, push,
                                          delete)
        except asyncpg.UniqueViolationError:  # a concurrent change took the pattern
            raise RuleInvalid(["Package name pattern has already been taken"]) from None
        if updated is None:
            raise RecordNotFound()
        await _audit(conn, who, updated, "updated")
    return updated


async def delete_rule(db: Database, who: Principal, project_id: int, rule_id: int
                      ) -> ProtectionRule:
    async with db.transaction() as conn:
        rule = await q.delete_rule(conn, project_id, rule_id)
        if rule is None:
            raise RecordNotFound()
        await _audit(conn, who, rule, "deleted")
    return rule


def level_name(level: int | None) -> str | None:
    return LEVEL_NAMES.get(level) if level is not None else None
