"""Request parameters as GitLab (Grape) reads them: JSON, form or query, with its 400 texts."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import BadRequest, InvalidParameters

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


def as_int(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InvalidParameters([f"{name} is missing"])
        return None
    if isinstance(value, bool):
        raise InvalidParameters([f"{name} is invalid"])
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidParameters([f"{name} is invalid"]) from None


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
    return str(value)


def as_choice(params: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = as_str(params, name)
    if value is not None and value not in allowed:
        raise InvalidParameters([f"{name} does not have a valid value"])
    return value


def path_int(request: web.Request, name: str) -> int:
    """An integer path parameter (``:package_id``); GitLab's 400 for anything else."""
    raw = request.match_info[name]
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameters([f"{name} is invalid"]) from None
