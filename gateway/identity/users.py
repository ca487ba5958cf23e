"""Users: GitLab's ``lib/api/users.rb`` rules. Only administrators create, change, block and
delete users; any signed-in caller reads them."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from gateway.auth import Principal
from gateway.db.identity import users as user_queries
from gateway.enums import ACTIVE, BLOCKED, DEACTIVATED
from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateway.identity import limits
from gateway.identity.context import Services
from gateway.identity.paths import USERNAME_TEXT, valid_path
from gateway.models import Page, User
from gateway.numbers import INT32_MAX


def require_admin(who: Principal) -> None:
    """``authenticated_as_admin!``: everyone but administrators gets 403."""
    if not who.is_admin:
        raise Forbidden()


@dataclass(frozen=True, slots=True)
class UserFilters:
    username: str | None = None
    search: str | None = None
    active: bool | None = None
    blocked: bool | None = None
    external: bool | None = None
    admins: bool | None = None
    humans: bool | None = None
    without_bots: bool | None = None
    order_by: str = "id"
    sort: str = "desc"


async def current(svc: Services, who: Principal) -> User:
    async with svc.db.connection() as conn:
        user = await user_queries.by_id(conn, who.user_id or 0)
    if user is None:
        raise NotFound("User")
    return user


async def get(svc: Services, who: Principal, user_id: int) -> User:
    """``GET /users/:id``: signed-in callers only (GitLab's 403 "Not authorized!")."""
    if who.anonymous:
        raise Forbidden("Not authorized!")
    async with svc.db.connection() as conn:
        user = await user_queries.by_id(conn, user_id)
    if user is None:
        raise NotFound("User")
    return user


async def list_users(svc: Services, who: Principal, filters: UserFilters, *, limit: int,
                     offset: int) -> Page:
    """Anonymous callers may only look a user up by ``username``; only administrators filter
    by admins, search emails and choose the order."""
    if who.anonymous and filters.username is None:
        raise Forbidden("Not authorized to access /api/v4/users")
    admin = who.is_admin
    async with svc.db.connection() as conn:
        rows, total = await user_queries.list_users(
            conn, username=filters.username, search=filters.search, active=filters.active,
            blocked=filters.blocked, external=filters.external,
            admins=bool(filters.admins) and admin, humans=filters.humans,
            without_bots=filters.without_bots, search_email=admin,
            order_by=filters.order_by if admin else "id",
            sort=filters.sort if admin else "desc", limit=limit, offset=offset,
        )
    return Page(rows, total)


def _check_fields(fields: dict[str, Any]) -> dict[str, list[str]]:
    problems = limits.too_long(fields, limits.USER_LIMITS)
    if "username" in fields and not valid_path(fields["username"]):
        problems.setdefault("username", []).append(USERNAME_TEXT)
    password = fields.get("password")
    if password is not None:
        if len(password) < limits.PASSWORD_MIN:
            problems["password"] = [
                f"is too short (minimum is {limits.PASSWORD_MIN} characters)"]
        elif len(password) > limits.PASSWORD_MAX:
            problems["password"] = [f"is too long (maximum is {limits.PASSWORD_MAX} characters)"]
    if "email" in fields and "@" not in fields["email"]:
        problems["email"] = ["is invalid"]
    limit = fields.get("projects_limit")
    if limit is not None and not 0 <= limit <= INT32_MAX:
        problems["projects_limit"] = [
            "must be greater than or equal to 0" if limit < 0
            else f"must be less than or equal to {INT32_MAX}"]
    return problems


def _hash_password(fields: dict[str, Any]) -> None:
    """Salted scrypt: account passwords never authenticate API calls, but are not kept plain."""
    password = fields.pop("password", None)
    if password is not None:
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
        fields["password_digest"] = f"scrypt${salt.hex()}${digest.hex()}"


def random_password() -> str:
    """For ``reset_password`` / ``force_random_password``: a password nobody knows."""
    return secrets.token_urlsafe(24)


async def create(svc: Services, who: Principal, fields: dict[str, Any]) -> User:
    """A user as ``POST /users`` makes it: email checked first, then username (409s)."""
    require_admin(who)
    fields = dict(fields)
    async with svc.db.transaction() as conn:
        if await user_queries.email_taken(conn, fields["email"]):
            raise Conflict("Email has already been taken")
        if await user_queries.username_taken(conn, fields["username"]):
            raise Conflict("Username has already been taken")
        if problems := _check_fields(fields):
            raise ValidationFailed(problems)
        _hash_password(fields)
        return await user_queries.insert(conn, fields)


async def update(svc: Services, who: Principal, user_id: int, fields: dict[str, Any]) -> User:
    """Changes to ``admin``/``external``/``state`` change what the user's tokens may do: every
    gateway drops its cached tokens."""
    require_admin(who)
    fields = dict(fields)
    async with svc.changing(f"user:{user_id}") as conn:
        user = await user_queries.by_id(conn, user_id)
        if user is None:
            raise NotFound("User")
        # python-gitlab re-sends email, username and name unchanged on every save().
        for name in ("email", "username", "name"):
            if fields.get(name) == getattr(user, name):
                del fields[name]
        if "email" in fields and await user_queries.email_taken(conn, fields["email"], user_id):
            raise Conflict("Email has already been taken")
        if "username" in fields and await user_queries.username_taken(
                conn, fields["username"], user_id):
            raise Conflict("Username has already been taken")
        if problems := _check_fields(fields):
            raise ValidationFailed(problems)
        _hash_password(fields)
        return await user_queries.update(conn, user_id, fields)


async def delete(svc: Services, who: Principal, user_id: int, *, hard_delete: bool) -> None:
    """Every token of the user goes with it (rows cascade), and so do the objects of packages
    in the user's personal projects."""
    require_admin(who)
    async with svc.changing(f"user:{user_id}") as conn:
        if await user_queries.by_id(conn, user_id) is None:
            raise NotFound("User")
        if not hard_delete and await user_queries.sole_owned_groups(conn, user_id):
            raise Conflict("User cannot be removed while is the sole-owner of a group")
        await user_queries.delete(conn, user_id)
    svc.wake_deletions()


async def set_state(svc: Services, who: Principal, user_id: int, state: str) -> None:
    """Block, deactivate or reactivate; the user's tokens answer accordingly everywhere at once."""
    require_admin(who)
    if state not in (ACTIVE, BLOCKED, DEACTIVATED):
        raise ValueError(state)
    async with svc.changing(f"user:{user_id}") as conn:
        if await user_queries.set_state(conn, user_id, state) is None:
            raise NotFound("User")
