"""The ``@latest`` alias of downloads (GitLab issue 421976): the version of a package that a
download of ``…/generic/:name/@latest/:file`` serves.

It is the newest default version (never a hidden, deprecated or unfinished one) holding a file
of that name: by upload time of that file, or with ``?order=semver`` the highest semantic version
(semver 2.0.0 precedence; versions that are not semantic versions are passed over).
"""

from __future__ import annotations

import semver

from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import InvalidParameters

ORDERS = ("upload", "semver")


def check_order(order: str | None) -> str:
    if order is None:
        return "upload"
    if order not in ORDERS:
        raise InvalidParameters(["order does not have a valid value"])
    return order


def _highest_semver(versions: list[str]) -> str | None:
    parsed = [(semver.Version.parse(v), v) for v in versions if semver.Version.is_valid(v)]
    return max(parsed)[1] if parsed else None


async def resolve(db: Database, project_id: int, name: str, file_name: str, order: str
                  ) -> str | None:
    """The version ``@latest`` stands for, or None when no default version holds the file."""
    async with db.connection() as conn:
        if order == "semver":
            return _highest_semver(await q.default_versions_with_file(conn, project_id, name,
                                                                      file_name))
        return await q.newest_default_version_with_file(conn, project_id, name, file_name)
