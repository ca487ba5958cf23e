"""Deleting packages and files (the Packages API and delete by path).

Every delete passes the project's protection rules (``minimum_access_level_for_delete``) once
the package is found, as GitLab's ``MarkPackageForDestructionService`` does.

Deleting is immediate rather than GitLab's "mark pending_destruction, destroy later": the rows
go at once, which has the same visible effect (absent from lists, GET and downloads), and in the
same transaction the schema's trigger queues their objects for ``gateway.deletions``.
"""

from __future__ import annotations

import asyncpg

from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import NotFound, RecordNotFound
from gateway.governance import audit
from gateway.governance.protection import Actor, refuse_protected_delete
from gateway.models import Package
from gateway.naming import FileTarget
from gateway.packages.listing import displayable_package


async def _audit(conn: asyncpg.Connection, actor: Actor, pkg: Package, *,
                 file_name: str | None = None, package_file_id: int | None = None) -> None:
    """The delete's audit event, in its transaction."""
    one_file = file_name is not None or package_file_id is not None
    what = f"{pkg.name}/{pkg.version}"
    if file_name is not None:
        what += f"/{file_name}"
    elif package_file_id is not None:
        what += f" file {package_file_id}"
    extra = {k: v for k, v in (("file_name", file_name), ("package_file_id", package_file_id))
             if v is not None}
    await audit.record(
        conn, actor.principal, "package_file_deleted" if one_file else "package_deleted",
        entity_type="Project", entity_id=pkg.project_id, message=f"Deleted {what}",
        target=audit.Target("Packages::Package", pkg.id, pkg.name),
        package_name=pkg.name, package_version=pkg.version, **extra)


async def _delete_whole_package(conn: asyncpg.Connection, pkg: Package) -> bool:
    # The upload commit's lock: a file is never added to a package that is being deleted.
    await q.lock_package_version(conn, pkg.project_id, pkg.name, pkg.version)
    return await q.delete_package(conn, pkg.id)


async def delete_package(db: Database, actor: Actor, project_id: int, package_id: int) -> None:
    """Remove the package and its files; their objects are queued for deletion."""
    pkg = await displayable_package(db, project_id, package_id)
    async with db.transaction() as conn:
        await refuse_protected_delete(conn, actor, project_id, pkg.name)
        if not await _delete_whole_package(conn, pkg):
            raise RecordNotFound()  # deleted meanwhile
        await _audit(conn, actor, pkg)


async def delete_package_file(
    db: Database, actor: Actor, project_id: int, package_id: int, file_id: int
) -> None:
    """Remove one file (the package stays, even empty); its object is queued for deletion."""
    pkg = await displayable_package(db, project_id, package_id)
    async with db.transaction() as conn:
        await refuse_protected_delete(conn, actor, project_id, pkg.name)
        if not await q.delete_package_file(conn, package_id, file_id):
            raise NotFound()
        await _audit(conn, actor, pkg, package_file_id=file_id)


async def delete_file_by_path(db: Database, actor: Actor, project_id: int,
                              target: FileTarget) -> None:
    """``DELETE`` on a generic file URL: every file of that name in that version."""
    async with db.transaction() as conn:
        pkg = await q.find_installable_package(
            conn, project_id, target.package_name, target.package_version
        )
        if pkg is None:
            raise RecordNotFound()
        await refuse_protected_delete(conn, actor, project_id, pkg.name)
        await q.lock_package_version(conn, project_id, pkg.name, pkg.version)
        if not await q.delete_files_named(conn, pkg.id, target.file_name):
            raise RecordNotFound()
        await _audit(conn, actor, pkg, file_name=target.file_name)


async def delete_version_by_path(
    db: Database, actor: Actor, project_id: int, package_name: str, package_version: str
) -> None:
    """``DELETE`` on ``…/generic/:package_name/:package_version``: the whole version."""
    async with db.transaction() as conn:
        pkg = await q.find_installable_package(conn, project_id, package_name, package_version)
        if pkg is None:
            raise RecordNotFound()
        await refuse_protected_delete(conn, actor, project_id, pkg.name)
        if not await _delete_whole_package(conn, pkg):
            raise RecordNotFound()
        await _audit(conn, actor, pkg)
