"""What governance asks of an upload: once before its body is read (cheap, to refuse early)
and again inside the commit's transaction, where the answer is authoritative (a rule created
while the bytes were streaming still applies)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.db.pool import Database
from gateway.governance import audit, protection
from gateway.governance.protection import Actor
from gateway.naming import FileTarget


async def before_body(db: Database, actor: Actor, project_id: int, target: FileTarget) -> None:
    """GitLab's ``protect_package!`` of the upload's authorize step."""
    await protection.check_push(db, actor, project_id, target.package_name)


@dataclass(frozen=True, slots=True)
class CommitChecks:
    """``gateway.packages.commit.CommitChecks`` for one caller."""

    actor: Actor

    async def __call__(self, conn: asyncpg.Connection, project_id: int, package_id: int,
                       target: FileTarget, size: int) -> None:
        await protection.refuse_protected_push(conn, self.actor, project_id,
                                               target.package_name)
        await audit.record(
            conn, self.actor.principal, "package_published", entity_type="Project",
            entity_id=project_id, message=f"Published {_file_path(target)}",
            target=audit.Target("Packages::Package", package_id, target.package_name),
            package_name=target.package_name, package_version=target.package_version,
            file_name=target.file_name, size=size)


def _file_path(target: FileTarget) -> str:
    return f"{target.package_name}/{target.package_version}/{target.file_name}"
