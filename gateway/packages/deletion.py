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
from gateway.governance.protection import Actor, refuse_protected_delete
from gateway.models import Package
from gateway.naming import FileTarget
from gateway.packages.listing import displayable_package


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


async def delete_package_file(
    db: Database, actor: Actor, project_id: int, package_id: int, file_id: int
) -> None:
    """Remove one file (the package stays, even empty); its object is queued for deletion."""
    pkg = await displayable_package(db, project_id, package_id)
    async with db.transaction() as conn:
        await refuse_protected_delete(conn, actor, project_id, pkg.name)
        if not await q.delete_package_file(conn, package_id, file_id):
            raise NotFound()


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
