"""What governance asks of an upload: once before its body is read (cheap, to refuse early)
and again inside the commit's transaction, where the answer is authoritative (a rule created
while the bytes were streaming still applies)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.db import governance as q
from gateway.db import packages as pq
from gateway.db.pool import Database
from gateway.governance import audit, protection, quotas
from gateway.governance.protection import Actor
from gateway.governance.quotas import Defaults, QuotaStats
from gateway.models import UploadTarget
from gateway.naming import FileTarget


async def _refuse(conn: asyncpg.Connection, actor: Actor, project_id: int,
                  target: FileTarget, size: int, defaults: Defaults,
                  stats: QuotaStats | None, *, locked: bool,
                  facts: q.UploadFacts | None = None) -> None:
    if facts is None:
        level, check_rules = protection.push_rule_args(actor)
        facts = await q.upload_facts(conn, project_id, target.package_name, level, check_rules)
    protected, holders = facts
    if protected:
        raise protection.PackageProtected()
    await quotas.check_holders(conn, holders, size, defaults, stats, locked=locked)


async def before_body(db: Database, actor: Actor, project_id: int, target: FileTarget,
                      declared_size: int | None, defaults: Defaults,
                      stats: QuotaStats | None = None) -> None:
    """GitLab's ``protect_package!`` of the upload's authorize step, then the quotas against
    the declared size (and one more file)."""
    async with db.connection() as conn:
        await _refuse(conn, actor, project_id, target, declared_size or 0, defaults, stats,
                      locked=False)


async def before_body_recording_pending(
    db: Database, actor: Actor, project_id: int, target: FileTarget,
    declared_size: int | None, defaults: Defaults, stats: QuotaStats | None,
    pending: tuple[str, str],
) -> UploadTarget:
    """``before_body``, in the round trip that records the upload's pending row (``pending``:
    object key, instance; the sweeper's guarantee starts before any byte can reach the store)
    and reads what the duplicate check needs, which is returned for the caller to apply
    (``gateway.packages.duplicates.refuse_duplicate``). A refusal here drops the row again;
    one by the caller must too."""
    level, check_rules = protection.push_rule_args(actor)
    async with db.connection() as conn:
        found, facts = await pq.upload_target_and_facts_recording_pending(
            conn, project_id, target.package_name, target.package_version, target.file_name,
            *pending, level, check_rules)
        try:
            await _refuse(conn, actor, project_id, target, declared_size or 0, defaults, stats,
                          locked=False, facts=facts)
        except BaseException:
            await pq.delete_pending_upload(conn, pending[0])
            raise
    return found


@dataclass(frozen=True, slots=True)
class CommitChecks:
    """``gateway.packages.commit.CommitChecks`` for one caller: the rules and quotas again,
    authoritatively (under the quotas' locks), in the commit's transaction; returns the audit
    event, which the file row's statement writes."""

    actor: Actor
    defaults: Defaults
    stats: QuotaStats | None = None

    def facts_args(self) -> tuple[int | None, bool]:
        return protection.push_rule_args(self.actor)

    async def __call__(self, conn: asyncpg.Connection, project_id: int, package_id: int,
                       target: FileTarget, size: int, facts: q.UploadFacts | None
                       ) -> audit.Pending:
        """``facts``: read by the caller under the version's lock with ``facts_args``
        (None: read here)."""
        await _refuse(conn, self.actor, project_id, target, size, self.defaults, self.stats,
                      locked=True, facts=facts)
        return audit.prepare(
            self.actor.principal, "package_published", entity_type="Project",
            entity_id=project_id, message=f"Published {_file_path(target)}",
            target=audit.Target("Packages::Package", package_id, target.package_name),
            package_name=target.package_name, package_version=target.package_version,
            file_name=target.file_name, size=size)


def _file_path(target: FileTarget) -> str:
    return f"{target.package_name}/{target.package_version}/{target.file_name}"
