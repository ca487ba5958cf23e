"""``/users``, ``/user``: accounts. Only administrators create, change and delete them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from gateway import accounts, keys
from gateway.api import caller, entities
from gateway.api.pagination import page_of
from gateway.api.params import as_bool, as_choice, as_int, as_str, path_int, read_params
from gateway.errors import Forbidden, InvalidParameters, NotFound, json_response

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


def _render(request: web.Request, row: Any, *, admin: bool) -> dict[str, Any]:
    base = caller.web_base(request)
    return entities.user_with_admin(row, base) if admin else entities.user(row, base)


async def _user_or_404(request: web.Request) -> Any:
    user_id = path_int(request, "user_id")
    async with request.app[keys.db].connection() as conn:
        row = await accounts.user_by_id(conn, user_id)
    if row is None:
        raise NotFound("User")
    return row


async def current_user(request: web.Request) -> web.Response:
    """``GET /user``: any valid token with ``api``, ``read_api`` or ``read_user``."""
    who = await caller.signed_in(request, read_scopes=caller.READ_USER)
    async with request.app[keys.db].connection() as conn:
        row = await accounts.user_by_id(conn, who.user_id)
    base = caller.web_base(request)
    if who.is_admin:
        return json_response(entities.user_with_admin(row, base))
    return json_response(entities.user_public(row, base))


async def list_users(request: web.Request) -> web.Response:
    who = await caller.caller(request, read_scopes=caller.READ_USER)
    params = await read_params(request)
    username = as_str(params, "username")
    if who.anonymous and username is None:
        raise Forbidden("Not authorized to access /api/v4/users")
    page = page_of(request)
    admin = who.is_admin
    async with request.app[keys.db].connection() as conn:
        rows, total = await accounts.list_users(
            conn, username=username, search=as_str(params, "search"),
            active=as_bool(params, "active"), blocked=as_bool(params, "blocked"),
            external=as_bool(params, "external"), admins=as_bool(params, "admins") and admin,
            humans=as_bool(params, "humans"),
            without_bots=as_bool(params, "without_project_bots"), search_email=admin,
            order_by=(as_str(params, "order_by") or "id") if admin else "id",
            sort=(as_choice(params, "sort", ("asc", "desc")) or "desc") if admin else "desc",
            limit=page.limit, offset=page.offset,
        )
    base = caller.web_base(request)
    items = [entities.user_with_admin(r, base) if admin else entities.user_basic(r, base)
             for r in rows]
    return caller.page_response(request, page, items, total)


async def get_user(request: web.Request) -> web.Response:
    who = await caller.caller(request, read_scopes=caller.READ_USER)
    if who.anonymous:
        raise Forbidden("Not authorized!")
    row = await _user_or_404(request)
    return json_response(_render(request, row, admin=who.is_admin))


async def create_user(request: web.Request) -> web.Response:
    await caller.signed_in(request)
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
    await caller.administrator(request)
    fields = _fields(params)
    if "password" not in fields:
        fields["password"] = accounts.random_password()
    if as_bool(params, "skip_confirmation"):
        fields["confirmed_at"] = dt.datetime.now(dt.UTC)
    async with request.app[keys.db].connection() as conn:
        row = await accounts.create_user(conn, fields)
    return json_response(_render(request, row, admin=True), 201)


async def update_user(request: web.Request) -> web.Response:
    await caller.administrator(request)
    row = await _user_or_404(request)
    params = await read_params(request)
    fields = _fields(params)
    # python-gitlab re-sends email, username and name unchanged on every save().
    for name in ("email", "username", "name"):
        if fields.get(name) == row[name]:
            del fields[name]
    if as_bool(params, "skip_reconfirmation") or as_bool(params, "skip_confirmation"):
        fields["confirmed_at"] = dt.datetime.now(dt.UTC)
    async with request.app[keys.db].connection() as conn:
        row = await accounts.update_user(conn, row["id"], fields)
    return json_response(_render(request, row, admin=True))


async def delete_user(request: web.Request) -> web.Response:
    await caller.administrator(request)
    row = await _user_or_404(request)
    hard = bool(as_bool(await read_params(request), "hard_delete"))
    async with request.app[keys.db].connection() as conn:
        await accounts.delete_user(conn, row["id"], hard_delete=hard)
    request.app[keys.authenticator].forget_cached()
    return web.Response(status=204)


async def _set_state(request: web.Request, state: str) -> web.Response:
    await caller.administrator(request)
    row = await _user_or_404(request)
    async with request.app[keys.db].connection() as conn:
        await accounts.set_user_state(conn, row["id"], state)
    request.app[keys.authenticator].forget_cached()
    return json_response(True, 201)


async def block_user(request: web.Request) -> web.Response:
    """``POST /users/:id/block``: the user's tokens then answer 403 "blocked"."""
    return await _set_state(request, "blocked")


async def unblock_user(request: web.Request) -> web.Response:
    return await _set_state(request, "active")
