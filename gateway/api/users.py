"""``/users``, ``/user``: accounts. Parse, call ``gateway.identity.users``, present."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import as_bool, as_choice, as_int, as_str, path_int, read_params
from gateway.errors import InvalidParameters, NotFound, json_response
from gateway.identity import users

# Fields of POST/PUT /users stored as given, with their parsers.
_TEXT = ("name", "email", "username", "note", "bio", "location", "organization", "job_title",
         "public_email", "website_url")
_FLAGS = {"admin": "is_admin", "can_create_group": "can_create_group", "external": "external",
          "private_profile": "private_profile"}


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in _TEXT:
        if (value := as_str(params, name)) is not None:
            fields[name] = value
    for name, column in _FLAGS.items():
        if (flag := as_bool(params, name)) is not None:
            fields[column] = flag
    if (limit := as_int(params, "projects_limit")) is not None:
        fields["projects_limit"] = limit
    if (password := as_str(params, "password")) is not None:
        fields["password"] = password
    return fields


def _user_id(request: web.Request) -> int:
    return path_int(request, "user_id", missing=NotFound("User"))


def _render(request: web.Request, row: Any, *, admin: bool) -> dict[str, Any]:
    base = caller.web_base(request)
    return entities.user_with_admin(row, base) if admin else entities.user(row, base)


async def current_user(request: web.Request) -> web.Response:
    """``GET /user``: any valid token with ``api``, ``read_api`` or ``read_user``."""
    who = await caller.signed_in(request, read_scopes=caller.READ_USER)
    row = await users.current(caller.services(request), who)
    base = caller.web_base(request)
    if who.is_admin:
        return json_response(entities.user_with_admin(row, base))
    return json_response(entities.user_public(row, base))


async def list_users(request: web.Request) -> web.Response:
    who = await caller.caller(request, read_scopes=caller.READ_USER)
    params = await read_params(request)
    page = page_of(request)
    filters = users.UserFilters(
        username=as_str(params, "username"), search=as_str(params, "search"),
        active=as_bool(params, "active"), blocked=as_bool(params, "blocked"),
        external=as_bool(params, "external"), admins=as_bool(params, "admins"),
        humans=as_bool(params, "humans"), without_bots=as_bool(params, "without_project_bots"),
        order_by=as_str(params, "order_by") or "id",
        sort=as_choice(params, "sort", ("asc", "desc")) or "desc",
    )
    found = await users.list_users(caller.services(request), who, filters, limit=page.limit,
                                   offset=page.offset)
    base = caller.web_base(request)
    items = [entities.user_with_admin(r, base) if who.is_admin else entities.user_basic(r, base)
             for r in found.items]
    return caller.page_response(request, page, items, found.total)


async def get_user(request: web.Request) -> web.Response:
    who = await caller.caller(request, read_scopes=caller.READ_USER)
    row = await users.get(caller.services(request), who, _user_id(request))
    return json_response(_render(request, row, admin=who.is_admin))


async def create_user(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    params = await read_params(request)
    missing = [f"{n} is missing" for n in ("email", "name", "username")
               if as_str(params, n) in (None, "")]
    if missing:
        raise InvalidParameters(missing)
    if params.get("password") in (None, "") and not as_bool(params, "reset_password") \
            and not as_bool(params, "force_random_password"):
        raise InvalidParameters([
            "password, reset_password, force_random_password are missing, at least one "
            "parameter must be provided"
        ])
    fields = _fields(params)
    if "password" not in fields:
        fields["password"] = users.random_password()
    if as_bool(params, "skip_confirmation"):
        fields["confirmed_at"] = dt.datetime.now(dt.UTC)
    row = await users.create(caller.services(request), who, fields)
    return json_response(_render(request, row, admin=True), 201)


async def update_user(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    user_id = _user_id(request)
    params = await read_params(request)
    fields = _fields(params)
    if as_bool(params, "skip_reconfirmation") or as_bool(params, "skip_confirmation"):
        fields["confirmed_at"] = dt.datetime.now(dt.UTC)
    row = await users.update(caller.services(request), who, user_id, fields)
    return json_response(_render(request, row, admin=True))


async def delete_user(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    user_id = _user_id(request)
    hard = bool(as_bool(await read_params(request), "hard_delete"))
    await users.delete(caller.services(request), who, user_id, hard_delete=hard)
    return web.Response(status=204)


async def _set_state(request: web.Request, state: str) -> web.Response:
    who = await caller.signed_in(request)
    await users.set_state(caller.services(request), who, _user_id(request), state)
    return json_response(True, 201)


async def block_user(request: web.Request) -> web.Response:
    """``POST /users/:id/block``: the user's tokens then answer 403 "blocked"."""
    return await _set_state(request, "blocked")


async def unblock_user(request: web.Request) -> web.Response:
    return await _set_state(request, "active")


async def deactivate_user(request: web.Request) -> web.Response:
    """``POST /users/:id/deactivate``: the tokens answer 403 "deactivated"."""
    return await _set_state(request, "deactivated")


async def activate_user(request: web.Request) -> web.Response:
    return await _set_state(request, "active")
