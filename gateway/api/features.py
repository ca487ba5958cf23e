"""``POST /api/v4/features/:name``: GitLab's feature flags API, for compatibility only.

packgate has no feature flags: what GitLab puts behind ``packages_protected_packages`` and
``packages_protected_packages_delete`` is always on. Scripts (python-gitlab's own functional
tests among them) turn those flags on before they use protection rules, so an administrator's
``POST`` is answered with GitLab's ``Feature`` entity and changes nothing.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller
from gateway.api.params import as_bool, read_params
from gateway.errors import Forbidden, InvalidParameters, json_response


async def set_feature(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    if not who.is_admin:  # GitLab's authenticated_as_admin!
        raise Forbidden()
    params = await read_params(request)
    if params.get("value") in (None, ""):
        raise InvalidParameters(["value is missing"])
    try:
        on = bool(as_bool(params, "value"))
    except InvalidParameters:
        on = True  # a percentage or an actor count: GitLab enables the flag partly
    name = request.match_info["name"]
    return json_response({
        "name": name,
        "state": "on" if on else "off",
        "gates": [{"key": "boolean", "value": on}],
        "definition": None,
    }, 201)
