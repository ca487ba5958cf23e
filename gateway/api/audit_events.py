"""GitLab's audit events API: ``GET /audit_events`` (administrators), ``GET
/projects/:id/audit_events`` and ``GET /groups/:id/audit_events`` (Developer+, who see only
their own events below Maintainer of the project or Owner of the group), each with
``/:audit_event_id``; ``created_after``, ``created_before`` and GitLab's pagination."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway import keys
from gateway.api import caller
from gateway.api.pagination import page_of
from gateway.api.params import as_choice, as_datetime, as_int, path_int, read_params
from gateway.api.present import iso
from gateway.errors import InvalidParameters, RecordNotFound, json_response
from gateway.governance import audit_reading as audit
from gateway.models import AuditEvent

_INSTANCE_ENTITY_TYPES = (*audit.ENTITY_TYPES, "Gitlab::Audit::InstanceScope")


def event_entity(event: AuditEvent) -> dict[str, Any]:
    """``API::Entities::AuditEvent``: details hold the message, author, target, address and
    the entity's path, as GitLab's ``formatted_details``."""
    details = dict(orjson.loads(event.details))
    details.update({
        "target_id": event.target_id, "target_type": event.target_type,
        "target_details": event.target_details, "ip_address": event.ip_address,
        "entity_path": event.entity_path,
    })
    return {
        "id": event.id,
        "author_id": event.author_id,
        "entity_id": event.entity_id,
        "entity_type": event.entity_type,
        "event_name": event.event_name,
        "details": details,
        "created_at": iso(event.created_at),
    }


def _scope(request: web.Request) -> tuple[str, str | None]:
    source = request.match_info.get("source")
    if source is None:
        return "instance", None
    return source[:-1], request.match_info["id"]  # projects → project, groups → group


def _window(params: dict[str, Any]) -> audit.Window:
    errors: list[str] = []
    values = []
    for name in ("created_after", "created_before"):
        try:
            values.append(as_datetime(params, name))
        except InvalidParameters as exc:
            errors.append(exc.message)
            values.append(None)
    if errors:
        raise InvalidParameters(errors)
    return audit.Window(*values)


async def list_events(request: web.Request) -> web.Response:
    params = await read_params(request)
    window = _window(params)
    scope, ref = _scope(request)
    entity_type = entity_id = None
    if scope == "instance":
        entity_type = as_choice(params, "entity_type", _INSTANCE_ENTITY_TYPES)
        entity_id = as_int(params, "entity_id")
    who = await caller.signed_in(request)
    page = page_of(request)
    found = await audit.list_events(
        request.app[keys.db], who, scope, ref, window, entity_type=entity_type,
        entity_id=entity_id, limit=page.limit, offset=page.offset)
    return caller.page_response(request, page, [event_entity(e) for e in found.items],
                                found.total)


async def get_event(request: web.Request) -> web.Response:
    event_id = path_int(request, "audit_event_id", missing=RecordNotFound())
    scope, ref = _scope(request)
    who = await caller.signed_in(request)
    event = await audit.get_event(request.app[keys.db], who, scope, ref, event_id)
    return json_response(event_entity(event))
