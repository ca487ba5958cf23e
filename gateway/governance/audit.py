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


@dataclass(frozen=True, slots=True)
class Pending:
    """An event ready to be written, by ``record`` or by the statement that makes the change
    it describes (the file row's insert writes a ``package_published`` in the same round
    trip); ``written`` then logs it with what the insert returned."""

    author_id: int | None
    author_name: str
    entity_type: str
    entity_id: int
    event_name: str
    target_type: str | None
    target_id: int | None
    target_details: str | None
    ip_address: str | None
    details: dict[str, Any]

    def args(self) -> tuple[Any, ...]:
        """The values of ``gateway.db.governance.INSERT_AUDIT_EVENT``'s parameters, in order."""
        return (self.author_id, self.author_name, self.entity_type, self.entity_id,
                self.event_name, self.target_type, self.target_id, self.target_details,
                self.ip_address, orjson.dumps(self.details).decode())

    def written(self, event: AuditEvent) -> None:
        log.info("audit event %s", self.event_name,
                 extra={"audit": _log_fields(event, self.details)})


def prepare(who: Principal | None, event_name: str, *, entity_type: str, entity_id: int,
            message: str, target: Target | None = None, **extra: Any) -> Pending:
    """One event, not yet written; ``extra`` goes into ``details`` (plain values, never a
    token)."""
    author_id, author_name, author_class = _author(who)
    details = {"custom_message": message, "author_name": author_name,
               "author_class": author_class, **extra}
    return Pending(author_id, author_name, entity_type, entity_id, event_name,
                   target.type if target else None, target.id if target else None,
                   target.details if target else None, logs.client_address.get(), details)


async def record(conn: asyncpg.Connection, who: Principal | None, event_name: str, *,
                 entity_type: str, entity_id: int, message: str,
                 target: Target | None = None, **extra: Any) -> AuditEvent:
    """One event, in the caller's transaction; ``extra`` goes into ``details`` (plain values,
    never a token)."""
    pending = prepare(who, event_name, entity_type=entity_type, entity_id=entity_id,
                      message=message, target=target, **extra)
    event = await q.insert_audit_event(conn, *pending.args())
    pending.written(event)
    return event


def _log_fields(event: AuditEvent, details: dict[str, Any]) -> dict[str, Any]:
    return {"id": event.id, "event_name": event.event_name, "entity_type": event.entity_type,
            "entity_id": event.entity_id, "entity_path": event.entity_path,
            "author_id": event.author_id, "target_type": event.target_type,
            "target_id": event.target_id, "target_details": event.target_details,
            "ip_address": event.ip_address, "details": details}
