"""Finding the file to serve for a download (one query for the project and the file)."""

from __future__ import annotations

import weakref

from gateway.auth import Principal
from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.identity.policy import ProjectAccess, abilities
from gateway.naming import LATEST_VERSION, FileTarget
from gateway.numbers import id_or_path
from gateway.packages import latest


async def file_for_caller(
    db: Database, who: Principal, project_ref: str, target: FileTarget, *,
    allow_guest_pull: bool, order: str = "upload",
) -> tuple[ProjectAccess | None, dict | None]:
    """The project as ``who`` sees it and, if they may read its packages, the file to serve.

    One query finds both: a redirect is mostly database round trips (and the pool adds one
    more, its reset, per connection handed back). The ``@latest`` alias is resolved once the
    caller may read (so it reveals no version to anyone else), then served as that version;
    its row then carries ``package_version``.
    """
    ref = id_or_path(project_ref)
    if ref is None:
        return None, None
    async with db.connection() as conn:
        project, found = await q.file_for_caller(
            conn, ref, who.user_id, target.package_name, target.package_version,
            target.file_name,
        )
    if project is None:
        return None, None
    access = abilities(who, project, allow_guest_pull=allow_guest_pull)
    if not access.read_package:
        return access, None
    if target.package_version == LATEST_VERSION:
        return access, await _latest_file(db, who, project.id, target, order)
    return access, found


async def _latest_file(db: Database, who: Principal, project_id: int, target: FileTarget,
                       order: str) -> dict | None:
    version = await latest.resolve(db, project_id, target.package_name, target.file_name, order)
    if version is None:
        return None
    async with db.connection() as conn:
        _, found = await q.file_for_caller(
            conn, project_id, who.user_id, target.package_name, version, target.file_name
        )
    return None if found is None else {**found, "package_version": version}


# The marks being written, per database: a busy file's mark falls due for every request in
# flight at once, and each would otherwise queue on the package row's lock with its own UPDATE.
_marking: weakref.WeakKeyDictionary[Database, set[tuple[int, int]]] = \
    weakref.WeakKeyDictionary()


async def mark_downloaded(db: Database, package_id: int, file_id: int) -> None:
    """Notes the download, unless the same mark is being written already: that one notes
    this download too (it is the same minute)."""
    marking = _marking.setdefault(db, set())
    key = (package_id, file_id)
    if key in marking:
        return
    marking.add(key)
    try:
        async with db.connection() as conn:
            await q.mark_downloaded(conn, package_id, file_id)
    finally:
        marking.discard(key)
