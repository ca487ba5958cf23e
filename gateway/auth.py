"""Who is calling, and what may they do to a project: GitLab's credentials, scopes and roles.

Credentials arrive as headers, query parameters or HTTP Basic; each kind of token is looked up
by the SHA-256 digest of its value (tokens are never stored) and compared in constant time.
Resolution follows GitLab's order (``lib/api/api_guard.rb``), so the same request gets the same
401/403/404 as on GitLab.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from gateway.db import identity
from gateway.db.pool import Database
from gateway.errors import (
    BASIC_CHALLENGE,
    Forbidden,
    InsufficientScope,
    InvalidToken,
    NotFound,
    Unauthorized,
)

GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 15, 20, 30, 40, 50
MINIMAL_ACCESS = 5  # a group member who sees the group, not its projects

PAT_PREFIX = "glpat-"
DEPLOY_PREFIX = "gldt-"
JOB_PREFIX = "glcbt-"

READ_METHODS = frozenset({"GET", "HEAD"})
# Scopes every API route registers (``lib/api/api.rb``); read_api counts only on GET/HEAD. The
# insufficient-scope body lists them all.
API_SCOPES = "api read_api"
_BLOCKED = {
    "blocked": "Your account has been blocked.",
    "deactivated": "Your account has been deactivated by your administrator. "
    "Please log back in to reactivate your account.",
}


def new_token(prefix: str) -> tuple[str, bytes]:
    """A fresh token and the digest to store; the token itself is shown once and forgotten."""
    token = prefix + secrets.token_urlsafe(15)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller. ``user_id`` is set for users (PATs and job tokens act for a user)."""

    kind: str = "anonymous"  # anonymous | user | deploy_token | job_token
    user_id: int | None = None
    username: str | None = None
    is_admin: bool = False
    external: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: int | None = None
    deploy_project_id: int | None = None
    deploy_group_id: int | None = None
    job_project_id: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal()


@dataclass(frozen=True, slots=True)
class Credentials:
    """Every place GitLab looks for a credential (``lib/gitlab/auth/auth_finders.rb``)."""

    private_token: str | None = None
    bearer: str | None = None
    deploy_token: str | None = None
    job_token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None

    @classmethod
    def from_request(cls, headers: Mapping[str, str], query: Mapping[str, str]) -> Credentials:
        bearer = None
        basic_user = basic_password = None
        authorization = headers.get("Authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            bearer = value.strip()
        elif scheme.lower() == "basic" and value.strip():
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
                basic_user, _, basic_password = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                pass
        return cls(
            private_token=query.get("private_token") or headers.get("PRIVATE-TOKEN") or None,
            bearer=bearer or query.get("access_token") or query.get("bearer_token") or None,
            deploy_token=headers.get("Deploy-Token") or None,
            job_token=query.get("job_token") or query.get("token") or headers.get("JOB-TOKEN")
            or None,
            basic_user=basic_user,
            basic_password=basic_password or None,
        )


class _TokenCache:
    """Verified tokens for a few seconds: revocation is honoured within that window."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._rows: dict[tuple[str, bytes], tuple[float, Any]] = {}

    def get(self, table: str, digest: bytes) -> Any:
        hit = self._rows.get((table, digest))
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def clear(self) -> None:
        self._rows.clear()

    def put(self, table: str, digest: bytes, row: Any) -> None:
        if self._ttl <= 0:
            return
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[(table, digest)] = (time.monotonic() + self._ttl, row)


class Authenticator:
    # GitLab records a token's last use at most every ten minutes.
    TOUCH_INTERVAL = 600.0

    def __init__(self, db: Database, cache_seconds: float = 0.0) -> None:
        self._db = db
        self._cache = _TokenCache(cache_seconds)
        self._touched: dict[int, float] = {}

    def forget_cached(self) -> None:
        """Drop every cached token (after a revocation, so this process honours it at once)."""
        self._cache.clear()

    async def _lookup(self, table: str, token: str) -> Any:
        prefix = {"pat": PAT_PREFIX, "deploy": DEPLOY_PREFIX, "job": JOB_PREFIX}[table]
        if not token.startswith(prefix):
            return None  # every token packgate issues carries its kind's prefix
        digest = token_digest(token)
        row = self._cache.get(table, digest)
        if row is None:
            find = {
                "pat": identity.find_personal_access_token,
                "deploy": identity.find_deploy_token,
                "job": identity.find_job_token,
            }[table]
            async with self._db.connection() as conn:
                row = await find(conn, digest)
            if row is None:
                return None
            self._cache.put(table, digest, row)
        if not hmac.compare_digest(bytes(row["token_digest"]), digest):
            return None
        return row

    async def authenticate(
        self, creds: Credentials, method: str, *, job_token_basic: bool = True,
        challenge: str | None = BASIC_CHALLENGE,
    ) -> Principal:
        """GitLab's resolution order on the package routes, where deploy and job tokens count
        too; raises its 401/403 for bad, expired or weak tokens. ``challenge`` is the
        ``WWW-Authenticate`` value of a plain 401 (the Packages realm on package routes)."""
        # 1. deploy token (unknown ones are ignored)
        candidate = creds.basic_password or creds.deploy_token or creds.bearer
        if candidate and (row := await self._lookup("deploy", candidate)):
            return Principal(
                kind="deploy_token",
                username=row["username"],
                scopes=frozenset(row["scopes"]),
                token_id=row["token_id"],
                deploy_project_id=row["project_id"],
                deploy_group_id=row["group_id"],
            )
        # 2. job token as Bearer
        if creds.bearer and (row := await self._lookup("job", creds.bearer)):
            return self._job_principal(row)
        # 3. personal (project, group) access token
        if (principal := await self._from_pat(creds, method, challenge, basic=True)) is not None:
            return principal
        # 4. job token: Basic as gitlab-ci-token, parameters, JOB-TOKEN header
        job = None
        if job_token_basic and creds.basic_user == "gitlab-ci-token" and creds.basic_password:
            job = creds.basic_password
        job = job or creds.job_token
        if job:
            row = await self._lookup("job", job)
            if row is None:
                raise Unauthorized(challenge=challenge)
            return self._job_principal(row)
        return ANONYMOUS

    async def authenticate_api(
        self, creds: Credentials, method: str, *, read_scopes: frozenset[str] = frozenset(),
        any_scope: bool = False,
    ) -> Principal:
        """The administration routes: only personal (project, group) access tokens count, from
        ``PRIVATE-TOKEN``/``private_token`` or Bearer; deploy and job tokens and Basic are not
        accepted there, so they leave the caller anonymous. ``read_scopes`` are extra scopes
        the route accepts on GET/HEAD (``read_user`` on the users routes); ``any_scope`` is for
        the routes a token may call on itself whatever its scopes (revoking itself)."""
        principal = await self._from_pat(
            creds, method, None, basic=False, read_scopes=read_scopes, any_scope=any_scope
        )
        return principal or ANONYMOUS

    async def _from_pat(
        self, creds: Credentials, method: str, challenge: str | None, *, basic: bool,
        read_scopes: frozenset[str] = frozenset(), any_scope: bool = False,
    ) -> Principal | None:
        # A job token in PRIVATE-TOKEN is ignored rather than refused (auth.md §2).
        private = creds.private_token
        if private and private.startswith(JOB_PREFIX):
            private = None
        for value, strict in (
            (private, True),
            (creds.bearer, True),
            (creds.basic_password if basic else None, False),
        ):
            if not value:
                continue
            row = await self._lookup("pat", value)
            if row is None:
                if strict:
                    raise Unauthorized(challenge=challenge)
                continue
            principal = self._pat_principal(row, method, read_scopes, any_scope)
            await self._touch(row)
            return principal
        return None

    async def _touch(self, row: Any) -> None:
        """Keep ``last_used_at`` (shown by the token APIs) within GitLab's ten minutes."""
        now = time.monotonic()
        if not row["touch_due"] or now - self._touched.get(row["token_id"], -1e9) < \
                self.TOUCH_INTERVAL:
            return
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[row["token_id"]] = now
        async with self._db.connection() as conn:
            await identity.touch_pat(conn, row["token_id"])

    @staticmethod
    def _check_user_state(row: Any) -> None:
        if row["state"] in _BLOCKED:
            raise Forbidden(_BLOCKED[row["state"]])

    def _pat_principal(
        self, row: Any, method: str, read_scopes: frozenset[str] = frozenset(),
        any_scope: bool = False,
    ) -> Principal:
        if row["expired"]:
            raise InvalidToken(InvalidToken.EXPIRED)
        if row["revoked"]:
            raise InvalidToken(InvalidToken.REVOKED)
        self._check_user_state(row)
        scopes = frozenset(row["scopes"])
        readable = method in READ_METHODS and (
            "read_api" in scopes or not scopes.isdisjoint(read_scopes)
        )
        if "api" not in scopes and not readable and not any_scope:
            raise InsufficientScope(API_SCOPES)
        return Principal(
            kind="user",
            user_id=row["user_id"],
            username=row["username"],
            is_admin=row["is_admin"],
            external=row["external"],
            scopes=scopes,
            token_id=row["token_id"],
        )

    def _job_principal(self, row: Any) -> Principal:
        self._check_user_state(row)
        return Principal(
            kind="job_token",
            user_id=row["user_id"],
            username=row["username"],
            is_admin=False,  # a job token never carries instance administration
            external=row["external"],
            token_id=row["token_id"],
            job_project_id=row["job_project_id"],
        )


@dataclass(frozen=True, slots=True)
class ProjectAccess:
    """A project as one caller sees it, with GitLab's package abilities."""

    project: asyncpg.Record
    level: int
    read_project: bool
    read_package: bool
    create_package: bool
    destroy_package: bool

    @property
    def project_id(self) -> int:
        return self.project["id"]


def abilities(who: Principal, row: asyncpg.Record, *, allow_guest_pull: bool) -> ProjectAccess:
    """GitLab's project policy: read_project, read_package, create_package, destroy_package."""
    visibility = row["visibility"]
    enabled = row["packages_enabled"]
    level = 0
    signed_in = False  # a signed-in, non-external user: sees internal projects
    deploy_read = deploy_write = False
    if who.kind in ("user", "job_token"):
        in_scope = who.kind == "user" or who.job_project_id == row["id"]
        if in_scope:
            level = row["access_level"]
            signed_in = not who.external
        # A job token outside its own project keeps only what anonymous callers have.
    elif who.kind == "deploy_token":
        applies = who.deploy_project_id == row["id"] or (
            who.deploy_group_id is not None and who.deploy_group_id in row["ancestor_ids"]
        )
        if applies:
            deploy_write = "write_package_registry" in who.scopes
            deploy_read = deploy_write or "read_package_registry" in who.scopes
    admin = who.is_admin
    public = visibility == "public"
    internal_ok = visibility == "internal" and signed_in
    registry = registry_access_level(row)
    enabled = enabled and registry != "disabled"
    read_project = admin or level >= GUEST or public or internal_ok or deploy_read
    member_read = admin or level >= REPORTER or (allow_guest_pull and level >= GUEST) or deploy_read
    if registry == "private":  # project members only, whatever the visibility
        read_package = enabled and member_read
    elif registry == "public":  # anyone, anonymous callers included
        read_package = enabled
    else:
        read_package = enabled and (member_read or public or internal_ok)
    create_package = enabled and (admin or level >= DEVELOPER or deploy_write)
    # GitLab lets a deploy token that may write packages delete them too.
    destroy_package = enabled and (admin or level >= MAINTAINER or deploy_write)
    return ProjectAccess(row, level, read_project, read_package, create_package, destroy_package)


async def project_access(
    db: Database, who: Principal, ref: str, *, allow_guest_pull: bool
) -> ProjectAccess | None:
    """The project named by ``ref`` (id or full path) as ``who`` sees it; None if missing."""
    async with db.connection() as conn:
        row = await identity.project_for_caller(conn, ref, who.user_id)
    if row is None:
        return None
    return abilities(who, row, allow_guest_pull=allow_guest_pull)


def require_visible(who: Principal, access: ProjectAccess | None) -> ProjectAccess:
    """A missing or invisible project: 401 for anonymous callers, 404 for the others."""
    if access is None or not access.read_project:
        if who.anonymous:
            raise Unauthorized()
        raise NotFound()
    return access


def registry_access_level(row: Any) -> str:
    """GitLab's ``package_registry_access_level``: the stored choice, else what GitLab derives
    from ``packages_enabled`` and the visibility (``Project#set_package_registry_access_level``)."""
    level = row.get("package_registry_access_level")
    if level:
        return level
    if not row["packages_enabled"]:
        return "disabled"
    return {"private": "private", "internal": "enabled", "public": "public"}[row["visibility"]]


def require_read_package(who: Principal, access: ProjectAccess | None) -> ProjectAccess:
    if access is not None and access.read_package:
        return access  # a registry open to everyone is readable without seeing the project
    access = require_visible(who, access)
    if not access.read_package:
        raise Forbidden()
    return access


def require_create_package(who: Principal, access: ProjectAccess | None) -> ProjectAccess:
    if access is None or not access.read_project:
        raise NotFound()
    if not access.create_package:
        raise Forbidden()
    return access


def require_destroy_package(who: Principal, access: ProjectAccess | None) -> ProjectAccess:
    access = require_visible(who, access)
    if not access.destroy_package:
        raise Forbidden()
    return access


@dataclass(frozen=True, slots=True)
class GroupAccess:
    """A group as one caller sees it."""

    group: asyncpg.Record
    level: int
    read_group: bool
    admin_group: bool  # Owner or administrator: settings, deletion

    @property
    def group_id(self) -> int:
        return self.group["id"]


def group_abilities(who: Principal, row: asyncpg.Record) -> GroupAccess:
    level = row["access_level"] if who.kind == "user" else 0
    signed_in = who.kind == "user" and not who.external
    deploy = who.kind == "deploy_token" and who.deploy_group_id in row["ancestor_ids"]
    visibility = row["visibility"]
    read_group = (
        who.is_admin
        or level >= MINIMAL_ACCESS
        or visibility == "public"
        or (visibility == "internal" and signed_in)
        or deploy
    )
    return GroupAccess(row, level, read_group, who.is_admin or level >= OWNER)


async def group_access(db: Database, who: Principal, ref: str) -> GroupAccess | None:
    """The group named by ``ref`` (id or full path) as ``who`` sees it; None if missing."""
    async with db.connection() as conn:
        row = await identity.group_for_caller(conn, ref, who.user_id)
    if row is None:
        return None
    return group_abilities(who, row)


def require_group_visible(who: Principal, access: GroupAccess | None) -> GroupAccess:
    """GitLab's ``find_group!``: a missing or invisible group is ``404 Group Not Found``."""
    if access is None or not access.read_group:
        raise NotFound("Group")
    return access
