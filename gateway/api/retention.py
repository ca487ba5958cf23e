"""A project's package retention policy (packgate's extension): ``GET``/``PUT
/projects/:id/packages/retention``, ``GET …/retention/preview`` (what a run would delete now)
and ``POST …/retention/run`` (apply it now; ``as_of`` a preview's moment deletes exactly what
that preview listed). The project's Maintainers and up."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import keys
from gateway.api import caller
from gateway.api.params import as_bool, as_datetime, as_int, as_str, read_params
from gateway.errors import InvalidParameters, json_response
from gateway.governance import retention
from gateway.models import RetentionPolicy

_DAYS = ("keep_n_latest", "delete_not_downloaded_days", "delete_older_than_days")


def policy_entity(p: RetentionPolicy) -> dict[str, Any]:
    return {
        "keep_n_latest": p.keep_n_latest,
        "name_regex": p.name_regex,
        "delete_not_downloaded_days": p.delete_not_downloaded_days,
        "delete_older_than_days": p.delete_older_than_days,
        "include_hidden": p.include_hidden,
    }


def plan_entity(plan: retention.Plan, freed: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        # Microseconds: POST …/run with this as_of finds exactly this plan again.
        "as_of": plan.as_of.isoformat(),
        "count": len(plan.items),
        "bytes": plan.bytes,
        "protected_versions_kept": plan.protected_kept,
        "items": [{
            "package_id": i.package_id, "package_name": i.package_name,
            "package_version": i.package_version, "package_file_id": i.package_file_id,
            "file_name": i.file_name, "size": i.size, "reason": i.reason,
        } for i in plan.items],
    }
    if freed is not None:
        body["bytes_freed"] = freed
    return body


def _change(params: dict[str, Any]) -> retention.PolicyChange:
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name in _DAYS:
        if name in params:
            try:
                value = as_int(params, name)
            except InvalidParameters as exc:
                errors.append(exc.message)
                continue
            if value is not None and not 1 <= value <= 1_000_000:
                errors.append(f"{name} does not have a valid value")
            values[name] = value
    if "name_regex" in params:
        try:
            values["name_regex"] = as_str(params, "name_regex")
        except InvalidParameters as exc:
            errors.append(exc.message)
    if "include_hidden" in params:
        try:
            values["include_hidden"] = bool(as_bool(params, "include_hidden"))
        except InvalidParameters as exc:
            errors.append(exc.message)
    if errors:
        raise InvalidParameters(errors)
    return retention.PolicyChange(values)


async def get_policy(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    found = await retention.get_policy(request.app[keys.db], who, request.match_info["id"])
    return json_response(policy_entity(found))


async def put_policy(request: web.Request) -> web.Response:
    change = _change(await read_params(request))
    who = await caller.signed_in(request)
    updated = await retention.set_policy(request.app[keys.db], who, request.match_info["id"],
                                         change)
    return json_response(policy_entity(updated))


async def preview(request: web.Request) -> web.Response:
    who = await caller.signed_in(request)
    plan = await retention.preview(request.app[keys.db], who, request.match_info["id"])
    return json_response(plan_entity(plan))


async def run(request: web.Request) -> web.Response:
    params = await read_params(request)
    as_of = as_datetime(params, "as_of")
    who = await caller.signed_in(request)
    plan, freed = await retention.run_project(request.app[keys.db], who,
                                              request.match_info["id"], as_of)
    request.app[keys.deletions].wake()
    return json_response(plan_entity(plan, freed))
