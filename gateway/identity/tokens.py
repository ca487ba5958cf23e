"""Tokens: personal access tokens, project and group access tokens (bot users), deploy tokens
and CI job tokens. A token's secret is in the ``Issued`` value of create and rotate only.

Rules from GitLab: ``lib/api/personal_access_tokens.rb``, ``lib/api/resource_access_tokens.rb``,
``app/services/personal_access_tokens/rotate_service.rb``,
``app/services/resource_access_tokens/{create,rotate}_service.rb``, ``app/models/
personal_access_token.rb`` (the lifetime cap).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

import asyncpg

from gateway import auth
from gateway.auth import Principal
from gateway.db.identity import members as member_queries
from gateway.db.identity import tokens as token_queries
from gateway.db.identity import users as user_queries
from gateway.enums import MAINTAINER, OWNER
from gateway.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InvalidParameters,
    NotFound,
    RecordNotFound,
    Unauthorized,
    ValidationFailed,
)
from gateway.governance import audit
from gateway.identity import limits, policy
from gateway.identity.context import Services
from gateway.identity.users import require_admin
from gateway.models import AccessToken, DeployToken, Issued, Page

PAT_SCOPES = frozenset({
    "api", "read_api", "read_user", "read_repository", "write_repository", "read_registry",
    "write_registry", "sudo", "admin_mode", "create_runner", "manage_runner", "ai_features",
    "k8s_proxy", "self_rotate", "read_service_ping", "read_virtual_registry",
    "write_virtual_registry",
})
# Project and group access tokens take the PAT scopes a bot may hold.
RESOURCE_TOKEN_SCOPES = PAT_SCOPES - {"sudo", "admin_mode", "read_service_ping"}
DEPLOY_TOKEN_SCOPES = frozenset({
    "read_repository", "read_registry", "write_registry", "read_package_registry",
    "write_package_registry", "read_virtual_registry", "write_virtual_registry",
})
ROTATED_TOKEN_DAYS = 7  # RotateService::EXPIRATION_PERIOD
MAX_JOB_SECONDS = 7 * 24 * 3600
DEFAULT_JOB_SECONDS = 3600


def check_scopes(scopes: object, allowed: frozenset[str]) -> list[str]:
    """``scopes`` as an array or a comma-separated string; Grape's 400 for unknown values."""
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    if not isinstance(scopes, list) or not scopes:
        raise InvalidParameters(["scopes is missing"])
    if not all(isinstance(s, str) and s in allowed for s in scopes):
        raise InvalidParameters(["scopes does not have a valid value"])
    return list(dict.fromkeys(scopes))


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _check_text(name: str, description: str | None, *, bad_request: bool) -> None:
    problems = limits.too_long({"name": name, "description": description}, limits.TOKEN_LIMITS)
    if problems:
        if bad_request:  # the access token APIs answer service errors as bad_request!
            field, (text,) = next(iter(problems.items()))
            raise BadRequest(f"{field.capitalize()} {text}")
        raise ValidationFailed(problems)


# --- personal access tokens -------------------------------------------------------------------


def _token_owner(row: AccessToken) -> tuple[str, int, str]:
    """(entity type, entity id, kind of token): a bot's token belongs to its project or
    group, a personal one to its user."""
    if row.bot_project_id is not None:
        return "Project", row.bot_project_id, "project_access_token"
    if row.bot_group_id is not None:
        return "Group", row.bot_group_id, "group_access_token"
    return "User", row.user_id, "personal_access_token"


async def _audit_token(conn: asyncpg.Connection, who: Principal | None, row: AccessToken,
                       verb: str, **extra: object) -> None:
    """``<kind>_created`` / ``_revoked`` / ``_rotated``: named by id and name, never by value."""
    entity_type, entity_id, kind = _token_owner(row)
    await audit.record(
        conn, who, f"{kind}_{verb}", entity_type=entity_type, entity_id=entity_id,
        message=f"{verb.capitalize()} {kind.replace('_', ' ')} with id {row.id}",
        target=audit.Target(kind, row.id, row.name), scopes=list(row.scopes), **extra)


async def issue_personal_access_token(
    conn: asyncpg.Connection, user_id: int, name: str, scopes: list[str],
    expires_at: dt.date | None = None, description: str | None = None, *,
    access_level: int | None = None, previous_id: int | None = None,
) -> Issued:
    """A new token, without any check (bootstrap, ``gateway dev``, the services below)."""
    token, digest = auth.new_token(auth.PAT_PREFIX)
    row = await token_queries.insert_pat(conn, user_id, name, digest, scopes, expires_at,
                                         description, access_level, previous_id)
    return Issued(token, row)


async def create_personal_access_token(
    svc: Services, who: Principal, user_id: int, *, name: str, scopes: list[str],
    expires_at: dt.date | None, description: str | None,
) -> Issued:
    """``POST /users/:user_id/personal_access_tokens``: administrators only. Without an
    expiry the token lives the maximum lifetime; past it, GitLab's 422 (``lib/api/users.rb``
    renders the service error as ``render_api_error!(message, 422)``)."""
    require_admin(who)
    _check_text(name, description, bad_request=False)
    if (error := limits.expiry_error(expires_at, svc.max_token_lifetime_days)) is not None:
        raise ApiError(error, 422)
    async with svc.db.transaction() as conn:
        if await user_queries.by_id(conn, user_id) is None:
            raise NotFound("User")
        issued = await issue_personal_access_token(
            conn, user_id, name, scopes,
            expires_at or limits.max_token_expiry(svc.max_token_lifetime_days), description,
        )
        await _audit_token(conn, who, issued.record, "created")
        return issued


async def list_personal_access_tokens(
    svc: Services, who: Principal, *, user_id: int | None, revoked: bool | None,
    state: str | None, search: str | None, limit: int, offset: int,
) -> Page:
    """Administrators see every token (``user_id`` filters); others their own only, and a
    foreign ``user_id`` is 401 (``restrict_non_admins!``)."""
    async with svc.db.connection() as conn:
        if who.is_admin:
            if user_id is not None and await user_queries.by_id(conn, user_id) is None:
                raise NotFound("User")
        elif user_id is not None and user_id != who.user_id:
            raise Unauthorized(challenge=None)
        else:
            user_id = who.user_id
        rows, total = await token_queries.list_pats(
            conn, user_id=user_id, revoked=revoked, state=state, search=search, limit=limit,
            offset=offset,
        )
    return Page(rows, total)


async def _own_token(conn: asyncpg.Connection, who: Principal, token_id: int) -> AccessToken:
    """The token if the caller may manage it. GitLab answers 401 to non-administrators for
    foreign and missing tokens alike, 404 to administrators for missing ones."""
    row = await token_queries.pat_by_id(conn, token_id)
    if row is None or not (who.is_admin or row.user_id == who.user_id):
        if who.is_admin:
            raise NotFound()
        raise Unauthorized(challenge=None)
    return row


async def get_personal_access_token(svc: Services, who: Principal, token_id: int | None
                                    ) -> AccessToken:
    """``token_id`` None: the token of this request (``/self``)."""
    async with svc.db.connection() as conn:
        return await _own_token(conn, who, token_id if token_id is not None else who.token_id)


async def revoke_personal_access_token(svc: Services, who: Principal, token_id: int | None
                                       ) -> None:
    """Owner or administrator; GitLab's 404 "Not found" for a missing id, 400 otherwise."""
    token_id = token_id if token_id is not None else who.token_id
    async with svc.changing(f"token:{token_id}") as conn:
        row = await token_queries.pat_by_id(conn, token_id or 0)
        if row is None:
            raise RecordNotFound()
        if not (who.is_admin or row.user_id == who.user_id):
            raise BadRequest()
        await token_queries.revoke_pat(conn, row.id)
        await _audit_token(conn, who, row, "revoked")


def _rotated_expiry(svc: Services, expires_at: dt.date | None) -> dt.date:
    """The rotated token's expiry: as asked (within the lifetime cap) or one week."""
    if (error := limits.expiry_error(expires_at, svc.max_token_lifetime_days)) is not None:
        raise BadRequest(error)
    return expires_at or _today() + dt.timedelta(days=ROTATED_TOKEN_DAYS)


async def _rotate(svc: Services, who: Principal, old: AccessToken, expires_at: dt.date
                  ) -> Issued:
    """A new token (new id) with the old one's name, scopes and role; the old one revoked, in
    one transaction; every gateway drops its cache of the old one."""
    async with svc.changing(f"token:{old.id}") as conn:
        if not await token_queries.revoke_pat(conn, old.id):
            raise BadRequest("Token already revoked")
        issued = await issue_personal_access_token(
            conn, old.user_id, old.name, list(old.scopes), expires_at, old.description,
            access_level=old.access_level, previous_id=old.id,
        )
        await _audit_token(conn, who, old, "rotated", new_token_id=issued.record.id)
        return issued


async def rotate_personal_access_token(
    svc: Services, who: Principal, token_id: int | None, expires_at: dt.date | None
) -> Issued:
    """``token_id`` None: ``/self/rotate``, which needs ``api`` or ``self_rotate``."""
    if token_id is None and not {"api", "self_rotate"} & who.scopes:
        raise Forbidden()
    async with svc.db.connection() as conn:
        old = await _own_token(conn, who, token_id if token_id is not None else who.token_id)
    return await _rotate(svc, who, old, _rotated_expiry(svc, expires_at))


# --- project and group access tokens (bot users) ---------------------------------------------


async def _resource(svc: Services, who: Principal, kind: str, ref: str
                    ) -> tuple[int, int, list[int]]:
    """(id, caller's level, ancestor group ids) of the project or group, which the caller must
    see (GitLab's ``find_source``: 404 "Project/Group Not Found")."""
    if kind == "project":
        access = policy.require_found_project(await policy.project_access(
            svc.db, who, ref, allow_guest_pull=svc.allow_guest_pull))
        return access.project_id, access.level, list(access.project.ancestor_ids)
    group = policy.require_group_visible(who, await policy.group_access(svc.db, who, ref))
    return group.group_id, group.level, list(group.group.ancestor_ids)


def _manage_level(kind: str) -> int:
    """``manage_resource_access_tokens``: Maintainer of a project, Owner of a group."""
    return MAINTAINER if kind == "project" else OWNER


async def _managed_resource(svc: Services, who: Principal, kind: str, ref: str
                            ) -> tuple[int, int]:
    source_id, level, _ = await _resource(svc, who, kind, ref)
    policy.require_level(who, level, _manage_level(kind))
    return source_id, level


def _token_missing(kind: str, token_id: object) -> NotFound:
    return NotFound(f"Could not find {kind} access token with token_id: {token_id}")


async def _resource_token(conn: asyncpg.Connection, kind: str, source_id: int,
                          token_id: int | None, raw: str) -> AccessToken:
    row = await token_queries.pat_by_id(conn, token_id) if token_id is not None else None
    owner = row and (row.bot_project_id if kind == "project" else row.bot_group_id)
    if row is None or owner != source_id:
        raise _token_missing(kind, raw)
    return row


async def list_resource_tokens(svc: Services, who: Principal, kind: str, ref: str, *,
                               state: str | None, limit: int, offset: int) -> tuple[int, Page]:
    source_id, _ = await _managed_resource(svc, who, kind, ref)
    owner = {"bot_project_id": source_id} if kind == "project" else {"bot_group_id": source_id}
    async with svc.db.connection() as conn:
        rows, total = await token_queries.list_pats(conn, state=state, limit=limit,
                                                    offset=offset, **owner)
    return source_id, Page(rows, total)


async def get_resource_token(svc: Services, who: Principal, kind: str, ref: str,
                             token_id: int | None, raw: str) -> tuple[int, AccessToken]:
    source_id, _ = await _managed_resource(svc, who, kind, ref)
    async with svc.db.connection() as conn:
        return source_id, await _resource_token(conn, kind, source_id, token_id, raw)


async def create_resource_token(
    svc: Services, who: Principal, kind: str, ref: str, *, name: str, scopes: list[str],
    access_level: int, expires_at: dt.date | None, description: str | None, host: str,
) -> tuple[int, Issued]:
    """A new bot user, a member of that one project or group with ``access_level``, holding
    one token. Never above the creator's own level; bots may not make bots (GitLab: "You
    cannot authenticate with a project access token" on this endpoint)."""
    source_id, level = await _managed_resource(svc, who, kind, ref)
    if who.bot:
        raise BadRequest(f"User does not have permission to create {kind} access token")
    if not who.is_admin and access_level > level:
        raise BadRequest("Access level of the token can't be greater the access level of the "
                         "user who created the token")
    _check_text(name, description, bad_request=True)
    if (error := limits.expiry_error(expires_at, svc.max_token_lifetime_days)) is not None:
        raise BadRequest(error)
    expiry = expires_at or limits.max_token_expiry(svc.max_token_lifetime_days)
    async with svc.db.transaction() as conn:
        issued = await issue_resource_token(
            conn, kind, source_id, name=name, scopes=scopes, access_level=access_level,
            expires_at=expiry, description=description, created_by=who.user_id, host=host,
        )
        await _audit_token(conn, who, issued.record, "created", access_level=access_level)
    return source_id, issued


async def issue_resource_token(
    conn: asyncpg.Connection, kind: str, source_id: int, *, name: str, scopes: list[str],
    access_level: int, expires_at: dt.date | None, description: str | None,
    created_by: int | None, host: str,
) -> Issued:
    """The bot, its membership and its token, without any check (services, tests)."""
    username = f"{kind}_{source_id}_bot_{secrets.token_hex(4)}"
    bot = await user_queries.insert(conn, {
        "username": username, "name": name, "email": f"{username}@noreply.{host}",
        "bot": True, "can_create_group": False, "projects_limit": 0,
        "bot_project_id": source_id if kind == "project" else None,
        "bot_group_id": source_id if kind == "group" else None,
    })
    await member_queries.add(conn, kind, source_id, bot.id, access_level, None, created_by)
    return await issue_personal_access_token(
        conn, bot.id, name, scopes, expires_at, description, access_level=access_level)


async def revoke_resource_token(svc: Services, who: Principal, kind: str, ref: str,
                                token_id: int | None, raw: str) -> None:
    """Revoked, and its bot leaves the project or group (GitLab removes the bot)."""
    source_id, _ = await _managed_resource(svc, who, kind, ref)
    async with svc.changing(f"token:{raw}") as conn:
        row = await _resource_token(conn, kind, source_id, token_id, raw)
        await token_queries.revoke_pat(conn, row.id)
        await _audit_token(conn, who, row, "revoked")
        await member_queries.remove(conn, kind, source_id, row.user_id)
        await user_queries.set_state(conn, row.user_id, "blocked")


async def rotate_resource_token(
    svc: Services, who: Principal, kind: str, ref: str, token_id: int | None, raw: str,
    expires_at: dt.date | None,
) -> tuple[int, Issued]:
    """Only a caller who may manage the resource's tokens may rotate one (others: 401, as
    GitLab's ``unauthorized!``), and only a token whose bot holds no more than the caller's
    own level (``ResourceAccessTokens::RotateService#valid_access_level?``): a Maintainer
    cannot turn an Owner token into a fresh secret of their own."""
    source_id, level, _ = await _resource(svc, who, kind, ref)
    if not who.is_admin and level < _manage_level(kind):
        raise Unauthorized(challenge=None)
    async with svc.db.connection() as conn:
        old = await _resource_token(conn, kind, source_id, token_id, raw)
        bot = await member_queries.direct_member(conn, kind, source_id, old.user_id)
    bot_level = bot.access_level if bot is not None else (old.access_level or 0)
    if not who.is_admin and bot_level > level:
        raise BadRequest("Not eligible to rotate token with access level higher than the user")
    issued = await _rotate(svc, who, old, _rotated_expiry(svc, expires_at))
    return source_id, issued


# --- deploy tokens ------------------------------------------------------------------------------

_DEPLOY_USERNAME = re.compile(r"\A[a-zA-Z0-9_.+-]+\Z")


async def _deploy_owner(svc: Services, who: Principal, kind: str, ref: str
                        ) -> tuple[int | None, int | None]:
    """(project_id, group_id): deploy tokens are managed by the project's or group's
    Maintainers."""
    source_id, level, _ = await _resource(svc, who, kind, ref)
    policy.require_level(who, level, MAINTAINER)
    return (source_id, None) if kind == "project" else (None, source_id)


async def issue_deploy_token(
    conn: asyncpg.Connection, *, project_id: int | None = None, group_id: int | None = None,
    name: str, scopes: list[str], expires_at: dt.datetime | None, username: str | None,
) -> Issued:
    token, digest = auth.new_token(auth.DEPLOY_PREFIX)
    row = await token_queries.insert_deploy_token(
        conn, project_id, group_id, name, username, digest, scopes, expires_at)
    return Issued(token, row)


async def create_deploy_token(
    svc: Services, who: Principal, kind: str, ref: str, *, name: str, scopes: list[str],
    expires_at: dt.datetime | None, username: str | None,
) -> Issued:
    project_id, group_id = await _deploy_owner(svc, who, kind, ref)
    if username is not None and not _DEPLOY_USERNAME.match(username):
        raise BadRequest("Username can contain only letters, digits, '_', '-', '+', and '.'")
    if problems := limits.too_long({"name": name, "username": username},
                                   limits.DEPLOY_TOKEN_LIMITS):
        field, (text,) = next(iter(problems.items()))
        raise BadRequest(f"{field.capitalize()} {text}")
    async with svc.db.transaction() as conn:
        issued = await issue_deploy_token(conn, project_id=project_id, group_id=group_id,
                                          name=name, scopes=scopes, expires_at=expires_at,
                                          username=username)
        await _audit_deploy_token(conn, who, project_id, group_id, issued.record.id, name,
                                  "created", scopes=scopes)
        return issued


async def list_deploy_tokens(svc: Services, who: Principal, kind: str | None, ref: str | None,
                             *, active: bool | None, limit: int, offset: int) -> Page:
    """A project's or group's tokens (Maintainers), or, ``kind`` None, all (administrators)."""
    if kind is None:
        require_admin(who)
        project_id = group_id = None
    else:
        project_id, group_id = await _deploy_owner(svc, who, kind, ref or "")
    async with svc.db.connection() as conn:
        rows, total = await token_queries.list_deploy_tokens(
            conn, project_id=project_id, group_id=group_id, active=active, limit=limit,
            offset=offset)
    return Page(rows, total)


async def get_deploy_token(svc: Services, who: Principal, kind: str, ref: str,
                           token_id: int) -> DeployToken:
    project_id, group_id = await _deploy_owner(svc, who, kind, ref)
    async with svc.db.connection() as conn:
        row = await token_queries.deploy_token_in(conn, token_id, project_id, group_id)
    if row is None:
        raise RecordNotFound()
    return row


async def delete_deploy_token(svc: Services, who: Principal, kind: str, ref: str,
                              token_id: int) -> None:
    project_id, group_id = await _deploy_owner(svc, who, kind, ref)
    async with svc.changing(f"deploy_token:{token_id}") as conn:
        if not await token_queries.delete_deploy_token(conn, token_id, project_id, group_id):
            raise RecordNotFound()
        await _audit_deploy_token(conn, who, project_id, group_id, token_id, None, "revoked")


async def _audit_deploy_token(conn: asyncpg.Connection, who: Principal, project_id: int | None,
                              group_id: int | None, token_id: int, name: str | None, verb: str,
                              **extra: object) -> None:
    entity_type, entity_id = ("Project", project_id) if project_id else ("Group", group_id)
    await audit.record(
        conn, who, f"deploy_token_{verb}", entity_type=entity_type, entity_id=entity_id or 0,
        message=f"{verb.capitalize()} deploy token with id {token_id}",
        target=audit.Target("DeployToken", token_id, name), **extra)


# --- CI job tokens (packgate's extension endpoints) ---------------------------------------------


async def _job_project(svc: Services, who: Principal, ref: str) -> int:
    """Job tokens of a project are minted, listed and revoked by its Maintainers (and
    administrators), as a CI system acting for them would."""
    project_id, level, _ = await _resource(svc, who, "project", ref)
    policy.require_level(who, level, MAINTAINER)
    return project_id


async def issue_job_token(conn: asyncpg.Connection, project_id: int, user_id: int,
                          expires_in: float) -> Issued:
    token, digest = auth.new_token(auth.JOB_PREFIX)
    row = await token_queries.insert_job_token(conn, project_id, user_id, digest, expires_in)
    return Issued(token, row)


async def mint_job_token(svc: Services, who: Principal, ref: str, *, user_id: int,
                         expires_in: int | None) -> Issued:
    project_id = await _job_project(svc, who, ref)
    seconds = DEFAULT_JOB_SECONDS if expires_in is None else expires_in
    if not 1 <= seconds <= MAX_JOB_SECONDS:
        raise InvalidParameters(["expires_in does not have a valid value"])
    async with svc.db.transaction() as conn:
        if await user_queries.by_id(conn, user_id) is None:
            raise NotFound("User")
        issued = await issue_job_token(conn, project_id, user_id, seconds)
        await _audit_job_token(conn, who, project_id, issued.record.id, "created",
                               user_id=user_id, expires_in=seconds)
        return issued


async def list_job_tokens(svc: Services, who: Principal, ref: str, *, limit: int,
                          offset: int) -> Page:
    project_id = await _job_project(svc, who, ref)
    async with svc.db.connection() as conn:
        rows, total = await token_queries.list_job_tokens(conn, project_id, limit=limit,
                                                          offset=offset)
    return Page(rows, total)


async def revoke_job_token(svc: Services, who: Principal, ref: str, token_id: int) -> None:
    """Revoked at once on every gateway; a token of another project is not found."""
    project_id = await _job_project(svc, who, ref)
    async with svc.changing(f"job_token:{token_id}") as conn:
        if not await token_queries.revoke_job_token(conn, token_id, project_id):
            raise RecordNotFound()
        await _audit_job_token(conn, who, project_id, token_id, "revoked")


async def _audit_job_token(conn: asyncpg.Connection, who: Principal, project_id: int,
                           token_id: int, verb: str, **extra: object) -> None:
    await audit.record(
        conn, who, f"ci_job_token_{verb}", entity_type="Project", entity_id=project_id,
        message=f"{verb.capitalize()} CI job token with id {token_id}",
        target=audit.Target("Ci::JobToken", token_id), **extra)
