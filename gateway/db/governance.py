"""Named SQL for governance: package protection rules (audit events, quotas and retention
policies follow in their own sections)."""

from __future__ import annotations

import asyncpg

from gateway.models import AuditEvent, AuditFilter, ProtectionRule

Conn = asyncpg.Connection

# --- package protection rules ----------------------------------------------------------------

# GitLab's Gitlab::SQL::Glob.to_like: % and _ of the pattern are literal, * is any run of
# characters; matched with ILIKE (case-insensitive), as Packages::Protection::Rule does.
_GLOB_MATCHES = (
    "$3 ILIKE replace(replace(replace(package_name_pattern, '%', '\\%'), '_', '\\_'), '*', '%')"
)

LIST_RULES = "SELECT * FROM package_protection_rules WHERE project_id = $1 ORDER BY id"
GET_RULE = "SELECT * FROM package_protection_rules WHERE project_id = $1 AND id = $2"
RULE_TAKEN = """
SELECT EXISTS (SELECT 1 FROM package_protection_rules
               WHERE project_id = $1 AND package_type = $2 AND package_name_pattern = $3
                 AND id IS DISTINCT FROM $4)
"""
INSERT_RULE = """
INSERT INTO package_protection_rules (project_id, package_name_pattern, package_type,
                                      minimum_access_level_for_push,
                                      minimum_access_level_for_delete)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
RETURNING *
"""
UPDATE_RULE = """
UPDATE package_protection_rules
SET package_name_pattern = $3, package_type = $4, minimum_access_level_for_push = $5,
    minimum_access_level_for_delete = $6, updated_at = now()
WHERE project_id = $1 AND id = $2
RETURNING *
"""
DELETE_RULE = "DELETE FROM package_protection_rules WHERE project_id = $1 AND id = $2 RETURNING *"

# Packages::Protection::Rule.for_action_exists?: a rule of this type whose pattern matches and
# whose minimum for the action is above the caller's level (NULL: that action is not
# protected by the rule).
_PROTECTED_FOR = """
SELECT EXISTS (SELECT 1 FROM package_protection_rules
               WHERE project_id = $1 AND package_type = $2 AND {column} > $4
                 AND """ + _GLOB_MATCHES + ")"
PROTECTED_FOR_PUSH = _PROTECTED_FOR.format(column="minimum_access_level_for_push")
PROTECTED_FOR_DELETE = _PROTECTED_FOR.format(column="minimum_access_level_for_delete")
# Deploy tokens have no level: any matching rule of the type protects the name from them.
ANY_RULE_MATCHES = """
SELECT EXISTS (SELECT 1 FROM package_protection_rules
               WHERE project_id = $1 AND package_type = $2 AND """ + _GLOB_MATCHES + ")"


async def list_rules(conn: Conn, project_id: int) -> list[ProtectionRule]:
    return [ProtectionRule.from_row(r) for r in await conn.fetch(LIST_RULES, project_id)]


async def get_rule(conn: Conn, project_id: int, rule_id: int) -> ProtectionRule | None:
    return ProtectionRule.from_optional(await conn.fetchrow(GET_RULE, project_id, rule_id))


async def rule_taken(conn: Conn, project_id: int, package_type: int, pattern: str,
                     rule_id: int | None) -> bool:
    return await conn.fetchval(RULE_TAKEN, project_id, package_type, pattern, rule_id)


async def insert_rule(conn: Conn, project_id: int, pattern: str, package_type: int,
                      push: int | None, delete: int | None) -> ProtectionRule | None:
    """None when another rule took (project, type, pattern) meanwhile."""
    return ProtectionRule.from_optional(
        await conn.fetchrow(INSERT_RULE, project_id, pattern, package_type, push, delete))


async def update_rule(conn: Conn, project_id: int, rule_id: int, pattern: str,
                      package_type: int, push: int | None, delete: int | None
                      ) -> ProtectionRule | None:
    return ProtectionRule.from_optional(await conn.fetchrow(
        UPDATE_RULE, project_id, rule_id, pattern, package_type, push, delete))


async def delete_rule(conn: Conn, project_id: int, rule_id: int) -> ProtectionRule | None:
    return ProtectionRule.from_optional(await conn.fetchrow(DELETE_RULE, project_id, rule_id))


async def protected_for(conn: Conn, action: str, project_id: int, package_type: int,
                        package_name: str, level: int) -> bool:
    query = PROTECTED_FOR_PUSH if action == "push" else PROTECTED_FOR_DELETE
    return await conn.fetchval(query, project_id, package_type, package_name, level)


async def any_rule_matches(conn: Conn, project_id: int, package_type: int,
                           package_name: str) -> bool:
    return await conn.fetchval(ANY_RULE_MATCHES, project_id, package_type, package_name)


# --- audit events ------------------------------------------------------------------------------

# The entity's path is read in the same statement (no extra round trip): a project's full path,
# a group's, or a user's username.
INSERT_AUDIT_EVENT = """
INSERT INTO audit_events (author_id, author_name, entity_type, entity_id, entity_path,
                          event_name, target_type, target_id, target_details, ip_address,
                          details)
VALUES ($1, $2, $3, $4,
        coalesce(CASE $3::text
            WHEN 'Project' THEN (SELECT n.full_path || '/' || p.path FROM projects p
                                 JOIN namespaces n ON n.id = p.namespace_id WHERE p.id = $4)
            WHEN 'Group' THEN (SELECT full_path FROM namespaces WHERE id = $4)
            WHEN 'User' THEN (SELECT username FROM users WHERE id = $4)
        END, ''),
        $5, $6, $7, $8, $9, $10::jsonb)
RETURNING *
"""

_AUDIT_FILTERS = """
WHERE ($1::text IS NULL OR entity_type = $1)
  AND ($2::bigint IS NULL OR entity_id = $2)
  AND ($3::bigint IS NULL OR author_id = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at <= $5)
"""
LIST_AUDIT_EVENTS = ("SELECT *, count(*) OVER () AS total FROM audit_events" + _AUDIT_FILTERS
                     + "ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7")
GET_AUDIT_EVENT = "SELECT * FROM audit_events" + _AUDIT_FILTERS + "AND id = $6"


async def insert_audit_event(conn: Conn, *, author_id: int | None, author_name: str,
                             entity_type: str, entity_id: int, event_name: str,
                             target_type: str | None, target_id: int | None,
                             target_details: str | None, ip_address: str | None,
                             details: str) -> AuditEvent:
    return AuditEvent.from_row(await conn.fetchrow(
        INSERT_AUDIT_EVENT, author_id, author_name, entity_type, entity_id, event_name,
        target_type, target_id, target_details, ip_address, details))


async def list_audit_events(conn: Conn, f: AuditFilter, *, limit: int, offset: int
                            ) -> tuple[list[AuditEvent], int]:
    rows = await conn.fetch(LIST_AUDIT_EVENTS, f.entity_type, f.entity_id, f.author_id,
                            f.created_after, f.created_before, limit, offset)
    total = rows[0]["total"] if rows else 0
    if not rows and offset:
        total = await conn.fetchval(
            "SELECT count(*) FROM audit_events" + _AUDIT_FILTERS, f.entity_type, f.entity_id,
            f.author_id, f.created_after, f.created_before)
    return [AuditEvent.from_row(r) for r in rows], total


async def get_audit_event(conn: Conn, f: AuditFilter, event_id: int) -> AuditEvent | None:
    return AuditEvent.from_optional(await conn.fetchrow(
        GET_AUDIT_EVENT, f.entity_type, f.entity_id, f.author_id, f.created_after,
        f.created_before, event_id))
