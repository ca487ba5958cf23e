"""Reading audit events, with GitLab's permissions (the audit events API's services)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.auth import Principal
from gateway.db import governance as q
from gateway.db.pool import Database
from gateway.enums import DEVELOPER, MAINTAINER, OWNER
from gateway.errors import Forbidden, RecordNotFound
from gateway.identity import policy
from gateway.models import AuditEvent, AuditFilter, Page

ENTITY_TYPES = ("User", "Group", "Project")


@dataclass(frozen=True, slots=True)
class Window:
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


async def _scope(db: Database, who: Principal, scope: str, ref: str | None,
                 window: Window, entity_type: str | None, entity_id: int | None
                 ) -> AuditFilter:
    """What the caller may read of ``scope`` (instance, project or group):

    - instance (``/audit_events``): administrators only (403);
    - project: ``read_project_audit_events`` (Developer+; 404 when invisible, 403 below);
      those without ``admin_project`` (Maintainer) see only the events they authored;
    - group: ``read_group_audit_events`` (Developer+); below Owner, only their own events.
    """
    after, before = window.created_after, window.created_before
    if scope == "instance":
        if not who.is_admin:
            raise Forbidden()
        return AuditFilter(entity_type, entity_id, None, after, before)
    if scope == "project":
        access = policy.require_found_project(await policy.project_access(
            db, who, ref or "", allow_guest_pull=False))
        policy.require_level(who, access.level, DEVELOPER)
        mine = None if who.is_admin or access.level >= MAINTAINER else who.user_id
        return AuditFilter("Project", access.project_id, mine, after, before)
    group = policy.require_group_visible(who, await policy.group_access(db, who, ref or ""))
    policy.require_level(who, group.level, DEVELOPER)
    mine = None if who.is_admin or group.level >= OWNER else who.user_id
    return AuditFilter("Group", group.group_id, mine, after, before)


async def list_events(db: Database, who: Principal, scope: str, ref: str | None, window: Window,
                      *, entity_type: str | None = None, entity_id: int | None = None,
                      limit: int, offset: int) -> Page:
    f = await _scope(db, who, scope, ref, window, entity_type, entity_id)
    async with db.connection() as conn:
        events, total = await q.list_audit_events(conn, f, limit=limit, offset=offset)
    return Page(events, total)


async def get_event(db: Database, who: Principal, scope: str, ref: str | None,
                    event_id: int) -> AuditEvent:
    f = await _scope(db, who, scope, ref, Window(), None, None)
    async with db.connection() as conn:
        event = await q.get_audit_event(conn, f, event_id)
    if event is None:
        raise RecordNotFound()
    return event
