"""Who is calling: GitLab's credentials and scopes, resolved to a principal.

Credentials arrive as headers, query parameters or HTTP Basic; each kind of token is looked up
by the SHA-256 digest of its value (tokens are never stored) and compared in constant time.
Resolution follows GitLab's order (``lib/api/api_guard.rb``), so the same request gets the same
401/403 as on GitLab. What a principal may do is ``gateway.identity.policy``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.db.identity import tokens as token_queries
from gateway.db.pool import Database
from gateway.enums import (  # noqa: F401 - GitLab's roles, as callers of auth name them
    DEVELOPER,
    GUEST,
    MAINTAINER,
    MINIMAL_ACCESS,
    OWNER,
    PLANNER,
    REFUSED_STATES,
    REPORTER,
)
from gateway.errors import (
    BASIC_CHALLENGE,
    Forbidden,
    InsufficientScope,
    InvalidToken,
    Unauthorized,
)
from gateway.models import DeployCredential, JobCredential, PatCredential

PAT_PREFIX = "glpat-"
DEPLOY_PREFIX = "gldt-"
JOB_PREFIX = "glcbt-"

READ_METHODS = frozenset({"GET", "HEAD"})
# Scopes every API route registers (``lib/api/api.rb``); read_api counts only on GET/HEAD. The
# insufficient-scope body lists them all.
API_SCOPES = "api read_api"


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
    bot: bool = False
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


class TokenCache:
    """Verified tokens for up to ``ttl`` seconds, dropped at once when identity changes.

    Served only while ``live``: the process's listener (``gateway.db.listen``) is receiving
    the change notifications of every gateway. While it is not (PostgreSQL restarting, the
    connection lost), nothing is served from here. A lookup that raced a change is not
    stored: ``generation`` moves on every invalidation, and ``put`` takes the generation read
    before the lookup.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._rows: dict[tuple[str, bytes], tuple[float, Any]] = {}
        self.generation = 0
        self.live = False

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    def get(self, table: str, digest: bytes) -> Any:
        if not self.live:
            return None
        hit = self._rows.get((table, digest))
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, table: str, digest: bytes, row: Any, generation: int) -> None:
        if self._ttl <= 0 or not self.live or generation != self.generation:
            return
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[(table, digest)] = (time.monotonic() + self._ttl, row)

    def invalidate(self, _reason: str = "") -> None:
        self.generation += 1
        self._rows.clear()

    def set_live(self, live: bool) -> None:
        """Whether change notifications arrive; every change of state drops the cache."""
        self.live = live
        self.invalidate()


class Authenticator:
    # GitLab records a token's last use at most every ten minutes.
    TOUCH_INTERVAL = 600.0

    def __init__(self, db: Database, cache_seconds: float = 0.0) -> None:
        self._db = db
        self.cache = TokenCache(cache_seconds)
        self._touched: dict[int, float] = {}
        self._finding: dict[tuple[str, bytes, int], asyncio.Future[Any]] = {}

    def forget_cached(self, _reason: str = "") -> None:
        """Drop every cached token (after a change, so this process honours it at once)."""
        self.cache.invalidate()

    async def _lookup(
        self, table: str, token: str
    ) -> PatCredential | DeployCredential | JobCredential | None:
        prefix = {"pat": PAT_PREFIX, "deploy": DEPLOY_PREFIX, "job": JOB_PREFIX}[table]
        if not token.startswith(prefix):
            return None  # every token packgate issues carries its kind's prefix
        digest = token_digest(token)
        row = self.cache.get(table, digest)
        if row is None:
            row = await self._shared_find(table, digest)
            if row is None:
                return None
        if not hmac.compare_digest(bytes(row.token_digest), digest):
            return None
        return row

    async def _shared_find(self, table: str, digest: bytes) -> Any:
        """The token's row from the database, one query for every request that misses the
        cache at once: when an entry expires, all the requests in flight with that token
        would otherwise each look it up. A request joins only a lookup started in the same
        cache generation (no change notified since), and only while the cache could have
        served it anyway; the lookup is a task of its own, so a caller that goes away does
        not cancel it for the others."""
        generation = self.cache.generation
        if not (self.cache.enabled and self.cache.live):
            return await self._find(table, digest, generation)
        key = (table, digest, generation)
        pending = self._finding.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._find(table, digest, generation))
            self._finding[key] = pending
            pending.add_done_callback(lambda f: self._found(key, f))
        return await asyncio.shield(pending)

    def _found(self, key: tuple[str, bytes, int], lookup: asyncio.Future[Any]) -> None:
        self._finding.pop(key, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: its callers, if any are left, get it raised

    async def _find(self, table: str, digest: bytes, generation: int) -> Any:
        find = {
            "pat": token_queries.find_personal_access_token,
            "deploy": token_queries.find_deploy_token,
            "job": token_queries.find_job_token,
        }[table]
        async with self._db.connection() as conn:
            row = await find(conn, digest)
        if row is not None:
            self.cache.put(table, digest, row, generation)
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
                username=row.username,
                scopes=frozenset(row.scopes),
                token_id=row.token_id,
                deploy_project_id=row.project_id,
                deploy_group_id=row.group_id,
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

    async def authenticate_session(self, row: PatCredential, method: str) -> Principal:
        """A web UI session's token (found by the session, never sent by the browser): the
        checks and scopes of the same token in ``PRIVATE-TOKEN``."""
        principal = self._pat_principal(row, method)
        await self._touch(row)
        return principal

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

    async def _touch(self, row: PatCredential) -> None:
        """Keep ``last_used_at`` (shown by the token APIs) within GitLab's ten minutes."""
        now = time.monotonic()
        if not row.touch_due or now - self._touched.get(row.token_id, -1e9) < \
                self.TOUCH_INTERVAL:
            return
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[row.token_id] = now
        async with self._db.connection() as conn:
            await token_queries.touch_pat(conn, row.token_id)

    @staticmethod
    def _check_user_state(row: PatCredential | JobCredential) -> None:
        if row.state in REFUSED_STATES:
            raise Forbidden(REFUSED_STATES[row.state])

    def _pat_principal(
        self, row: PatCredential, method: str, read_scopes: frozenset[str] = frozenset(),
        any_scope: bool = False,
    ) -> Principal:
        if row.expired:
            raise InvalidToken(InvalidToken.EXPIRED)
        if row.revoked:
            raise InvalidToken(InvalidToken.REVOKED)
        self._check_user_state(row)
        scopes = frozenset(row.scopes)
        readable = method in READ_METHODS and (
            "read_api" in scopes or not scopes.isdisjoint(read_scopes)
        )
        if "api" not in scopes and not readable and not any_scope:
            raise InsufficientScope(API_SCOPES)
        return Principal(
            kind="user",
            user_id=row.user_id,
            username=row.username,
            is_admin=row.is_admin,
            external=row.external,
            bot=row.bot,
            scopes=scopes,
            token_id=row.token_id,
        )

    def _job_principal(self, row: JobCredential) -> Principal:
        self._check_user_state(row)
        return Principal(
            kind="job_token",
            user_id=row.user_id,
            username=row.username,
            is_admin=False,  # a job token never carries instance administration
            external=row.external,
            bot=row.bot,
            token_id=row.token_id,
            job_project_id=row.job_project_id,
        )
