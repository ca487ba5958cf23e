"""Retention policies: which versions and files of a project go, previewed and applied.

A policy has three rules, each off unless set: keep the ``keep_n_latest`` newest versions of
each package name (only names that ``name_regex`` matches in full, RE2, when it is set); delete
versions created more than ``delete_older_than_days`` ago; delete files not downloaded (nor
uploaded) for ``delete_not_downloaded_days``. Hidden versions are left alone (neither deleted
nor counted among the newest) unless ``include_hidden``; a name that a protection rule guards
against deletion (any ``minimum_access_level_for_delete``) is never deleted by retention.

A plan is computed *as of* a moment: only what was created by then is looked at, and ages
are measured from it, so the same plan is found again later (a preview's ``as_of`` run later
deletes exactly what the preview listed). Applying it deletes exactly the files it lists (and
a version's row once nothing else is in it), under the upload commit's lock of each version:
a file uploaded after the plan is never lost, and deleted objects go through the deletion
queue like every other delete.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import re2

from gateway.auth import Principal
from gateway.config import Settings
from gateway.db import governance as q
from gateway.db.pool import Database
from gateway.enums import MAINTAINER
from gateway.errors import ServiceUnavailable, ValidationFailed
from gateway.governance import audit
from gateway.governance.protection import SYSTEM
from gateway.identity import policy as access_policy
from gateway.models import Package, RetentionPolicy
from gateway.packages import deletion

log = logging.getLogger("gateway.retention")

REGEX_MAX = 255
_RE2 = re2.Options()
_RE2.log_errors = False


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _RE2)


def regex_errors(pattern: str) -> list[str]:
    errors = []
    try:
        _compiled(pattern)
    except re2.error as exc:
        msg = exc.args[0] if exc.args else str(exc)
        errors.append("not valid RE2 syntax: "
                      + (msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)))
    if len(pattern) > REGEX_MAX:
        errors.append(f"is too long (maximum is {REGEX_MAX} characters)")
    return errors


@dataclass(frozen=True, slots=True)
class PlanItem:
    package_id: int
    package_name: str
    package_version: str
    package_file_id: int | None  # None: a version without files
    file_name: str | None
    size: int
    reason: str  # keep_n_latest | older_than | not_downloaded


@dataclass(frozen=True, slots=True)
class Plan:
    project_id: int
    as_of: dt.datetime
    items: tuple[PlanItem, ...]
    protected_kept: int  # versions a protection rule kept

    @property
    def bytes(self) -> int:
        return sum(i.size for i in self.items)


def _whole_version_reason(p: Any, rules: RetentionPolicy, as_of: dt.datetime) -> str | None:
    if rules.delete_older_than_days and p.created_at < as_of - dt.timedelta(
            days=rules.delete_older_than_days):
        return "older_than"
    if rules.keep_n_latest and p.rank > rules.keep_n_latest and (
            not rules.name_regex or _compiled(rules.name_regex).fullmatch(p.name)):
        return "keep_n_latest"
    return None


async def plan(db: Database, rules: RetentionPolicy, as_of: dt.datetime) -> Plan:
    """What a run as of ``as_of`` deletes."""
    async with db.connection() as conn:
        candidates = await q.retention_packages(conn, rules.project_id, as_of,
                                                rules.include_hidden)
        kept = [c for c in candidates if not c.protected]
        files = await q.retention_files(conn, [c.id for c in kept], as_of) if kept else []
    by_id = {c.id: c for c in kept}
    whole = {c.id: r for c in kept if (r := _whole_version_reason(c, rules, as_of))}
    stale_before = (as_of - dt.timedelta(days=rules.delete_not_downloaded_days)
                    if rules.delete_not_downloaded_days else None)
    items: list[PlanItem] = []
    with_files: set[int] = set()
    for f in files:
        c = by_id[f.package_id]
        with_files.add(c.id)
        reason = whole.get(c.id)
        if reason is None and stale_before is not None and (
                f.last_downloaded_at or f.created_at) < stale_before:
            reason = "not_downloaded"
        if reason is not None:
            items.append(PlanItem(c.id, c.name, c.version, f.id, f.file_name, f.size, reason))
    for package_id, reason in whole.items():
        if package_id not in with_files:
            c = by_id[package_id]
            items.append(PlanItem(c.id, c.name, c.version, None, None, 0, reason))
    items.sort(key=lambda i: (i.package_name, i.package_version, i.package_file_id or 0))
    return Plan(rules.project_id, as_of, tuple(items),
                sum(1 for c in candidates if c.protected))


async def apply(db: Database, the_plan: Plan) -> int:
    """Delete what the plan lists; returns the bytes freed."""
    per_package: dict[int, list[PlanItem]] = {}
    for item in the_plan.items:
        per_package.setdefault(item.package_id, []).append(item)
    freed = 0
    for package_id, items in per_package.items():
        first = items[0]
        pkg = Package(package_id, the_plan.project_id, first.package_name,
                      first.package_version)
        file_ids = [i.package_file_id for i in items if i.package_file_id is not None]
        whole = first.reason != "not_downloaded"
        freed += await deletion.delete_planned(db, SYSTEM, pkg, file_ids, whole=whole,
                                               reason=first.reason)
    return freed


# --- the policy API ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """The fields given (``None`` given turns a rule off)."""

    values: dict[str, Any]


_FIELDS = ("keep_n_latest", "name_regex", "delete_not_downloaded_days",
           "delete_older_than_days", "include_hidden")


async def _maintained(db: Database, who: Principal, ref: str) -> int:
    """Retention deletes packages: the project's Maintainers (admin_package) and up."""
    access = access_policy.require_found_project(await access_policy.project_access(
        db, who, ref, allow_guest_pull=False))
    access_policy.require_level(who, access.level, MAINTAINER)
    return access.project_id


async def get_policy(db: Database, who: Principal, ref: str) -> RetentionPolicy:
    project_id = await _maintained(db, who, ref)
    async with db.connection() as conn:
        found = await q.get_retention(conn, project_id)
    return found or RetentionPolicy(project_id)


async def set_policy(db: Database, who: Principal, ref: str, change: PolicyChange
                     ) -> RetentionPolicy:
    project_id = await _maintained(db, who, ref)
    regex = change.values.get("name_regex")
    if regex and (errors := regex_errors(regex)):
        raise ValidationFailed({"name_regex": errors})
    async with db.transaction() as conn:
        current = await q.get_retention(conn, project_id) or RetentionPolicy(project_id)
        fields = {n: getattr(current, n) for n in _FIELDS}
        fields.update(change.values)
        if fields["name_regex"] == "":
            fields["name_regex"] = None
        updated = await q.put_retention(conn, RetentionPolicy(project_id, **fields))
        await audit.record(conn, who, "package_retention_policy_updated",
                           entity_type="Project", entity_id=project_id,
                           message="Changed the package retention policy",
                           **{n: getattr(updated, n) for n in _FIELDS})
    return updated


async def preview(db: Database, who: Principal, ref: str) -> Plan:
    project_id = await _maintained(db, who, ref)
    async with db.connection() as conn:
        rules = await q.get_retention(conn, project_id)
        now = await conn.fetchval("SELECT now()")
    return await plan(db, rules or RetentionPolicy(project_id), now)


async def run_project(db: Database, who: Principal, ref: str, as_of: dt.datetime | None
                      ) -> tuple[Plan, int]:
    """Apply the project's policy now, as of ``as_of`` (a preview's) or now."""
    project_id = await _maintained(db, who, ref)
    async with db.connection() as conn:
        rules = await q.get_retention(conn, project_id)
        now = await conn.fetchval("SELECT now()")
    if as_of is None or as_of > now:
        as_of = now
    the_plan = await plan(db, rules or RetentionPolicy(project_id), as_of)
    return the_plan, await apply(db, the_plan)


# --- every project: the periodic runner and `gateway admin retention run` ----------------------


@dataclass(slots=True)
class RunReport:
    dry_run: bool = False
    busy: bool = False  # another instance holds the retention lock
    projects: int = 0
    items: int = 0
    bytes: int = 0
    plans: list[Plan] = field(default_factory=list)

    def __str__(self) -> str:
        if self.busy:
            return "another gateway is applying retention right now; nothing done"
        verb = "would delete" if self.dry_run else "deleted"
        return (f"{self.projects} project(s): {verb} {self.items} file(s) or empty "
                f"version(s), {self.bytes} bytes")


async def run_all(db: Database, *, interval: float = 0.0, dry_run: bool = False,
                  progress: Callable[[str], None] | None = None) -> RunReport:
    """Every policy due (``interval`` 0: every policy), one instance at a time: the leader is
    whoever holds the transaction-scoped advisory lock, held for the whole run."""
    report = RunReport(dry_run=dry_run)
    async with db.transaction() as lock:
        if not await q.try_retention_lock(lock):
            report.busy = True
            return report
        policies = await q.due_retention(lock, interval, everything=interval <= 0)
        now = await lock.fetchval("SELECT now()")
        for n, rules in enumerate(policies, 1):
            the_plan = await plan(db, rules, now)
            freed = the_plan.bytes if dry_run else await apply(db, the_plan)
            if not dry_run:
                async with db.connection() as conn:
                    await q.retention_ran(conn, rules.project_id)
            report.projects += 1
            report.items += len(the_plan.items)
            report.bytes += freed
            report.plans.append(the_plan)
            if progress is not None:
                progress(f"[{n}/{len(policies)}] project {rules.project_id}: "
                         f"{len(the_plan.items)} item(s), {freed} bytes")
    return report


async def run_periodically(db: Database, interval: float,
                           on_deleted: Callable[[], None] | None = None) -> None:
    """The runner every gateway has; the lock makes one of them apply each round."""
    while True:
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))
        try:
            report = await run_all(db, interval=interval)
        except ServiceUnavailable as exc:
            log.warning("retention round skipped: %s", exc.message)
            continue
        except Exception:
            log.exception("retention round failed")
            continue
        if report.items:
            log.info("retention: %s", report)
            if on_deleted is not None:
                on_deleted()


async def run_once(settings: Settings, *, dry_run: bool = False,
                   progress: Callable[[str], None] | None = None) -> str:
    """``gateway admin retention run``: every project's policy now, with its own connections;
    the objects freed are removed by the gateways' deletion workers (they poll the queue)."""
    async with Database.open(settings) as db:
        report = await run_all(db, dry_run=dry_run, progress=progress)
    lines = [str(report)]
    if dry_run:
        for the_plan in report.plans:
            lines += [f"  project {the_plan.project_id}: {i.package_name}/{i.package_version}"
                      f"/{i.file_name or ''} ({i.reason}, {i.size} bytes)"
                      for i in the_plan.items]
    return "\n".join(lines)
