"""Request parameters as GitLab (Grape) reads them: JSON, form or query, with its 400 texts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from aiohttp import web

from gateway.errors import BadRequest, GatewayError, InvalidParameters
from gateway.numbers import parse_int

_MAX_BODY = 1024 * 1024  # administration bodies are small; uploads never come through here


async def read_params(request: web.Request) -> dict[str, Any]:
    """Query parameters, overlaid by a JSON or form body. ``scopes[]=a&scopes[]=b`` → list."""
    params: dict[str, Any] = {}
    _merge_pairs(params, request.query.items())
    if request.body_exists:
        if (request.content_length or 0) > _MAX_BODY:
            raise BadRequest("request body too large")
        ctype = request.content_type
        if ctype == "application/json":
            raw = await request.read()
            if raw.strip():
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise BadRequest("Invalid JSON") from None
                if isinstance(body, dict):
                    params.update(body)
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            _merge_pairs(params, ((k, v) for k, v in form.items() if isinstance(v, str)))
    return params


def _merge_pairs(params: dict[str, Any], pairs: Any) -> None:
    for key, value in pairs:
        if key.endswith("[]"):
            params.setdefault(key[:-2], []).append(value)
        else:
            params[key] = value


def as_int(params: dict[str, Any], name: str, *, required: bool = False,
           out_of_range: GatewayError | None = None) -> int | None:
    """An integer parameter (``gateway.numbers.parse_int``): 400 ``<name> is invalid`` for
    anything but ASCII digits; ``out_of_range`` past int64 (a lookup's 404, say)."""
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InvalidParameters([f"{name} is missing"])
        return None
    return parse_int(value, name, out_of_range=out_of_range)


def as_int_list(params: dict[str, Any], name: str, *, out_of_range: GatewayError | None = None
                ) -> list[int]:
    """``1,2,3`` (or a JSON array, or one number) as integers, each read by ``parse_int``."""
    value = params.get(name)
    items = value if isinstance(value, list) else str(value).split(",")
    return [parse_int(item.strip() if isinstance(item, str) else item, name,
                      out_of_range=out_of_range)
            for item in items if not (isinstance(item, str) and not item.strip())]


def as_date(params: dict[str, Any], name: str) -> dt.date | None:
    """``YYYY-MM-DD`` (a longer ISO timestamp is read by its date)."""
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidParameters([f"{name} is invalid"]) from None


def as_datetime(params: dict[str, Any], name: str) -> dt.datetime | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameters([f"{name} is invalid"]) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def as_bool(params: dict[str, Any], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "t"):
        return True
    if text in ("false", "0", "no", "f"):
        return False
    raise InvalidParameters([f"{name} is invalid"])


def as_str(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or (required and value == ""):
        if required:
            raise InvalidParameters([f"{name} is missing"])
        return None
    if isinstance(value, dict | list):  # Grape's String refuses a Hash or an Array
        raise InvalidParameters([f"{name} is invalid"])
    return str(value)


def as_choice(params: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = as_str(params, name)
    if value is not None and value not in allowed:
        raise InvalidParameters([f"{name} does not have a valid value"])
    return value


def path_int(request: web.Request, name: str, *, missing: GatewayError) -> int:
    """An integer path parameter (``:package_id``, ``:user_id``): GitLab's 400 ``<name> is
    invalid`` for anything but ASCII digits, ``missing`` (the route's 404) past int64."""
    return parse_int(request.match_info[name], name, out_of_range=missing)


def path_id_or_self(request: web.Request, name: str, *, missing: GatewayError) -> int | None:
    """``:token_id`` that may be ``self`` (None)."""
    if request.match_info[name] == "self":
        return None
    return path_int(request, name, missing=missing)
