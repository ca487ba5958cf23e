"""Named SQL for governance: package protection rules (audit events, quotas and retention
policies follow in their own sections)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson

from gateway.models import (
    AuditEvent,
    AuditFilter,
    ProtectionRule,
    QuotaHolder,
    RetentionCandidate,
    RetentionFile,
    RetentionPolicy,
    Usage,
)

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
# whose minimum for deleting is above the caller's level (NULL: deletes are not protected by
# the rule). Pushes are checked by UPLOAD_FACTS below.
PROTECTED_FOR_DELETE = """
SELECT EXISTS (SELECT 1 FROM package_protection_rules
               WHERE project_id = $1 AND package_type = $2
                 AND minimum_access_level_for_delete > $4
                 AND """ + _GLOB_MATCHES + ")"
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


async def protected_for_delete(conn: Conn, project_id: int, package_type: int,
                               package_name: str, level: int) -> bool:
    return await conn.fetchval(PROTECTED_FOR_DELETE, project_id, package_type, package_name,
                               level)


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


async def insert_audit_event(conn: Conn, author_id: int | None, author_name: str,
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


# --- storage quotas ----------------------------------------------------------------------------

# What an upload must pass, in one round trip: whether a protection rule refuses the push ($3
# the caller's role; NULL for a deploy token, which any matching rule of the type stops; $4
# false for administrators, whom no rule stops), and the quota holders: the project (its own
# limits) and every group above it that has a limit, outermost first (the order quota locks
# are taken in, so two commits never wait on each other in turn).
UPLOAD_FACTS = """
WITH RECURSIVE up AS (
    SELECT n.id, n.parent_id, n.packages_max_bytes, n.packages_max_files, 1 AS depth
    FROM projects p JOIN namespaces n ON n.id = p.namespace_id WHERE p.id = $1
  UNION ALL
    SELECT n.id, n.parent_id, n.packages_max_bytes, n.packages_max_files, up.depth + 1
    FROM namespaces n JOIN up ON n.id = up.parent_id
), holders AS (
    SELECT 'group' AS scope, id, packages_max_bytes AS max_bytes,
           packages_max_files AS max_files, depth
    FROM up WHERE packages_max_bytes IS NOT NULL OR packages_max_files IS NOT NULL
  UNION ALL
    SELECT 'project', id, packages_max_bytes, packages_max_files, 0 FROM projects WHERE id = $1
)
SELECT holders.*, $4::boolean AND EXISTS (
    SELECT 1 FROM package_protection_rules
    WHERE project_id = $1 AND package_type = 7
      AND ($3::integer IS NULL OR minimum_access_level_for_push > $3)
      AND $2 ILIKE replace(replace(replace(package_name_pattern, '%', '\\%'), '_', '\\_'),
                           '*', '%')) AS protected
FROM holders
ORDER BY depth DESC
"""

# Held to the end of the commit's transaction: commits that count against one quota take turns.
LOCK_QUOTA = "SELECT pg_advisory_xact_lock(hashtextextended('quota/' || $1 || '/' || $2, 7))"

PROJECT_USAGE = """
SELECT coalesce(sum(size), 0)::bigint AS bytes, count(*) AS files
FROM package_files WHERE project_id = $1
"""
GROUP_USAGE = """
WITH RECURSIVE down AS (
    SELECT id FROM namespaces WHERE id = $1
  UNION ALL
    SELECT n.id FROM namespaces n JOIN down ON n.parent_id = down.id
)
SELECT coalesce(sum(f.size), 0)::bigint AS bytes, count(f.id) AS files
FROM projects p JOIN package_files f ON f.project_id = p.id
WHERE p.namespace_id IN (SELECT id FROM down)
"""

PROJECT_LIMITS = "SELECT packages_max_bytes, packages_max_files FROM projects WHERE id = $1"
GROUP_LIMITS = ("SELECT packages_max_bytes, packages_max_files FROM namespaces"
                " WHERE id = $1 AND kind = 'group'")
SET_PROJECT_LIMITS = """
UPDATE projects SET packages_max_bytes = $2, packages_max_files = $3 WHERE id = $1
RETURNING packages_max_bytes, packages_max_files
"""
SET_GROUP_LIMITS = """
UPDATE namespaces SET packages_max_bytes = $2, packages_max_files = $3
WHERE id = $1 AND kind = 'group'
RETURNING packages_max_bytes, packages_max_files
"""
# Every project and group with a limit of its own, and what it holds (for metrics).
LIMITED_USAGE = """
SELECT 'project' AS scope, p.id, p.packages_max_bytes AS max_bytes,
       p.packages_max_files AS max_files, u.bytes, u.files
FROM projects p, LATERAL (""" + PROJECT_USAGE.replace("$1", "p.id") + """) u
WHERE p.packages_max_bytes IS NOT NULL OR p.packages_max_files IS NOT NULL
UNION ALL
SELECT 'group', g.id, g.packages_max_bytes, g.packages_max_files, u.bytes, u.files
FROM namespaces g, LATERAL (""" + GROUP_USAGE.replace("$1", "g.id") + """) u
WHERE g.packages_max_bytes IS NOT NULL OR g.packages_max_files IS NOT NULL
"""
TOTAL_USAGE = "SELECT coalesce(sum(size), 0)::bigint AS bytes, count(*) AS files FROM package_files"


# UPLOAD_FACTS as one row, for a statement that brings them beside its own (the commit's look
# under the version's lock): the holders as a JSON array, outermost first, and the protection
# answer; the role and the check are that statement's parameters ``level`` and ``check``.
def upload_facts_row(*, level: int, check: int) -> str:
    numbered = re.sub(r"\$([34])\b", lambda m: f"${level if m[1] == '3' else check}",
                      UPLOAD_FACTS)
    return ("SELECT coalesce(bool_or(h.protected), false) AS facts_protected,"
            " jsonb_agg(to_jsonb(h) ORDER BY h.depth DESC) AS facts_holders"
            " FROM (" + numbered + ") h")


UploadFacts = tuple[bool, list[QuotaHolder]]


def upload_facts_from_row(row: Mapping[str, Any]) -> UploadFacts:
    """``upload_facts``'s answer from a row that has ``upload_facts_row``'s columns."""
    holders = row["facts_holders"]
    return (bool(row["facts_protected"]),
            [QuotaHolder.from_row(h) for h in orjson.loads(holders)] if holders else [])


async def upload_facts(conn: Conn, project_id: int, package_name: str, level: int | None,
                       check_rules: bool) -> tuple[bool, list[QuotaHolder]]:
    """(push protected, quota holders outermost first) for an upload into the project."""
    rows = await conn.fetch(UPLOAD_FACTS, project_id, package_name, level, check_rules)
    return (bool(rows and rows[0]["protected"]), [QuotaHolder.from_row(r) for r in rows])


async def lock_quota(conn: Conn, scope: str, holder_id: int) -> None:
    await conn.execute(LOCK_QUOTA, scope, str(holder_id))


async def usage(conn: Conn, scope: str, holder_id: int) -> Usage:
    row = await conn.fetchrow(PROJECT_USAGE if scope == "project" else GROUP_USAGE, holder_id)
    return Usage(row["bytes"], row["files"])


async def limits(conn: Conn, scope: str, holder_id: int) -> tuple[int | None, int | None] | None:
    row = await conn.fetchrow(PROJECT_LIMITS if scope == "project" else GROUP_LIMITS, holder_id)
    return None if row is None else (row[0], row[1])


async def set_limits(conn: Conn, scope: str, holder_id: int, max_bytes: int | None,
                     max_files: int | None) -> tuple[int | None, int | None] | None:
    row = await conn.fetchrow(SET_PROJECT_LIMITS if scope == "project" else SET_GROUP_LIMITS,
                              holder_id, max_bytes, max_files)
    return None if row is None else (row[0], row[1])


async def limited_usage(conn: Conn) -> list[tuple[str, int, int | None, int | None, Usage]]:
    return [(r["scope"], r["id"], r["max_bytes"], r["max_files"], Usage(r["bytes"], r["files"]))
            for r in await conn.fetch(LIMITED_USAGE)]


async def total_usage(conn: Conn) -> Usage:
    row = await conn.fetchrow(TOTAL_USAGE)
    return Usage(row["bytes"], row["files"])


# --- retention policies ------------------------------------------------------------------------

GET_RETENTION = "SELECT * FROM package_retention_policies WHERE project_id = $1"
PUT_RETENTION = """
INSERT INTO package_retention_policies (project_id, keep_n_latest, name_regex,
                                        delete_not_downloaded_days, delete_older_than_days,
                                        include_hidden)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (project_id) DO UPDATE
SET keep_n_latest = EXCLUDED.keep_n_latest, name_regex = EXCLUDED.name_regex,
    delete_not_downloaded_days = EXCLUDED.delete_not_downloaded_days,
    delete_older_than_days = EXCLUDED.delete_older_than_days,
    include_hidden = EXCLUDED.include_hidden, updated_at = now()
RETURNING *
"""
DUE_RETENTION = """
SELECT * FROM package_retention_policies
WHERE $1::boolean OR last_run_at IS NULL OR last_run_at < now() - make_interval(secs => $2)
ORDER BY project_id
"""
RETENTION_RAN = "UPDATE package_retention_policies SET last_run_at = now() WHERE project_id = $1"
RETENTION_LOCK_KEY = 0x72657465  # "rete"
TRY_RETENTION_LOCK = "SELECT pg_try_advisory_xact_lock($1)"

# The versions a plan looks at: created by ``as_of``, installable (hidden ones only when the
# policy includes them), ranked newest first within their name, and whether a protection rule
# guards the name against deletion (such names are never deleted by retention).
RETENTION_PACKAGES = """
SELECT p.id, p.name, p.version, p.status, p.created_at,
       row_number() OVER (PARTITION BY p.name ORDER BY p.created_at DESC, p.id DESC) AS rank,
       EXISTS (SELECT 1 FROM package_protection_rules r
               WHERE r.project_id = p.project_id AND r.package_type = 7
                 AND r.minimum_access_level_for_delete IS NOT NULL
                 AND p.name ILIKE replace(replace(replace(r.package_name_pattern, '%', '\\%'),
                                                  '_', '\\_'), '*', '%')) AS protected
FROM packages p
WHERE p.project_id = $1 AND p.package_type = 7 AND p.created_at <= $2
  AND (p.status IN (0, 5) OR ($3 AND p.status = 1))
"""
RETENTION_FILES = """
SELECT id, package_id, file_name, size, created_at, last_downloaded_at
FROM package_files
WHERE package_id = ANY($1::bigint[]) AND created_at <= $2 AND status = 0
ORDER BY package_id, id
"""
DELETE_PLANNED_FILES = """
DELETE FROM package_files WHERE package_id = $1 AND id = ANY($2::bigint[]) RETURNING id, size
"""
DELETE_PACKAGE_IF_EMPTY = """
DELETE FROM packages p WHERE p.id = $1
  AND NOT EXISTS (SELECT 1 FROM package_files f WHERE f.package_id = p.id)
RETURNING id
"""


async def get_retention(conn: Conn, project_id: int) -> RetentionPolicy | None:
    return RetentionPolicy.from_optional(await conn.fetchrow(GET_RETENTION, project_id))


async def put_retention(conn: Conn, policy: RetentionPolicy) -> RetentionPolicy:
    return RetentionPolicy.from_row(await conn.fetchrow(
        PUT_RETENTION, policy.project_id, policy.keep_n_latest, policy.name_regex,
        policy.delete_not_downloaded_days, policy.delete_older_than_days,
        policy.include_hidden))


async def due_retention(conn: Conn, interval: float, *, everything: bool
                        ) -> list[RetentionPolicy]:
    return [RetentionPolicy.from_row(r)
            for r in await conn.fetch(DUE_RETENTION, everything, interval)]


async def retention_ran(conn: Conn, project_id: int) -> None:
    await conn.execute(RETENTION_RAN, project_id)


async def try_retention_lock(conn: Conn) -> bool:
    return await conn.fetchval(TRY_RETENTION_LOCK, RETENTION_LOCK_KEY)


async def retention_packages(conn: Conn, project_id: int, as_of: dt.datetime,
                             include_hidden: bool) -> list[RetentionCandidate]:
    return [RetentionCandidate.from_row(r)
            for r in await conn.fetch(RETENTION_PACKAGES, project_id, as_of, include_hidden)]


async def retention_files(conn: Conn, package_ids: list[int], as_of: dt.datetime
                          ) -> list[RetentionFile]:
    return [RetentionFile.from_row(r)
            for r in await conn.fetch(RETENTION_FILES, package_ids, as_of)]


async def delete_planned_files(conn: Conn, package_id: int, file_ids: list[int]) -> int:
    """The files of the plan that are still there; returns their bytes."""
    return sum(r["size"] for r in await conn.fetch(DELETE_PLANNED_FILES, package_id, file_ids))


async def delete_package_if_empty(conn: Conn, package_id: int) -> bool:
    return await conn.fetchval(DELETE_PACKAGE_IF_EMPTY, package_id) is not None
