"""Audit events: who did what to which project, group or user, as rows in ``audit_events``
(GitLab's audit events API reads them) and as JSON log lines (logger ``gateway.audit``).

An event is recorded inside the transaction of the change it describes, so a change that rolls
back leaves no event and a committed one always has its event. What goes in: the author (a
user, or a deploy token as GitLab's ``DeployTokenAuthor``, id -2), the entity, a message, the
target (a token, a member, a rule, a package, by id and name), the client's address. Never a
secret: tokens are named by id and name, never by value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from gateway import logs
from gateway.auth import Principal
from gateway.db import governance as q
from gateway.models import AuditEvent

log = logging.getLogger("gateway.audit")

DEPLOY_TOKEN_AUTHOR = -2  # Gitlab::Audit::DeployTokenAuthor
UNAUTHENTICATED_AUTHOR = -1  # Gitlab::Audit::UnauthenticatedAuthor


@dataclass(frozen=True, slots=True)
class Target:
    type: str
    id: int | None
    details: str | None = None


def _author(who: Principal | None) -> tuple[int | None, str, str]:
    if who is None:  # the gateway itself (retention)
        return None, "packgate", "System"
    if who.kind == "deploy_token":
        return DEPLOY_TOKEN_AUTHOR, who.username or "Deploy Token", "DeployToken"
    if who.anonymous:
        return UNAUTHENTICATED_AUTHOR, "An unauthenticated user", "Gitlab::Audit::NullAuthor"
    return who.user_id, who.username or "", "User"


async def record(conn: asyncpg.Connection, who: Principal | None, event_name: str, *,
                 entity_type: str, entity_id: int, message: str,
                 target: Target | None = None, **extra: Any) -> AuditEvent:
    """One event, in the caller's transaction; ``extra`` goes into ``details`` (plain values,
    never a token)."""
    author_id, author_name, author_class = _author(who)
    ip = logs.client_address.get()
    details = {"custom_message": message, "author_name": author_name,
               "author_class": author_class, **extra}
    event = await q.insert_audit_event(
        conn, author_id=author_id, author_name=author_name, entity_type=entity_type,
        entity_id=entity_id, event_name=event_name,
        target_type=target.type if target else None, target_id=target.id if target else None,
        target_details=target.details if target else None, ip_address=ip,
        details=orjson.dumps(details).decode())
    log.info("audit event %s", event_name, extra={"audit": _log_fields(event, details)})
    return event


def _log_fields(event: AuditEvent, details: dict[str, Any]) -> dict[str, Any]:
    return {"id": event.id, "event_name": event.event_name, "entity_type": event.entity_type,
            "entity_id": event.entity_id, "entity_path": event.entity_path,
            "author_id": event.author_id, "target_type": event.target_type,
            "target_id": event.target_id, "target_details": event.target_details,
            "ip_address": event.ip_address, "details": details}
