"""Conditional writes: ``If-None-Match: *`` and ``If-Match`` on an upload.

A file's ETag is its sha256 in quotes: strong (the same bytes, byte for byte) and the same on
every gateway. A conditional upload is checked twice: before its body is sent, so a client
that would be refused never sends it, and again at the commit under the version's advisory
lock, which decides: of any number of racing conditional uploads exactly one can win.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import PreconditionFailed
from gateway.models import Package
from gateway.naming import FileTarget
from gateway.packages.commit import CommitCondition
from gateway.packages.etags import etag_of, parse_etags, strong_match, weak_match


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """What an upload requires of the file of its name in its version."""

    if_none_match: tuple[str, ...] | None = None  # only ``*`` is meaningful on a PUT
    if_match: tuple[str, ...] | None = None

    @classmethod
    def from_headers(cls, if_none_match: str | None, if_match: str | None
                     ) -> WriteCondition | None:
        """None when the request has neither header (GitLab's unconditional upload).

        A value that cannot be parsed matches nothing: ``If-Match`` then always fails, and
        ``If-None-Match`` only ever fails on ``*`` (RFC 9110 §13.1.2: a PUT uses it so).
        """
        if if_none_match is None and if_match is None:
            return None
        none_match = parse_etags(if_none_match) or () if if_none_match is not None else None
        match = parse_etags(if_match) or () if if_match is not None else None
        return cls(none_match, match)

    def holds(self, newest_sha256: str | None) -> bool:
        """Given the sha256 of the newest live file of that name (None: there is none)."""
        etag = etag_of(newest_sha256) if newest_sha256 is not None else None
        if self.if_match is not None and (etag is None or not strong_match(self.if_match, etag)):
            return False
        return not (self.if_none_match is not None and etag is not None
                    and weak_match(self.if_none_match, etag))


async def _newest_sha256(conn: asyncpg.Connection, package: Package | None,
                         file_name: str) -> str | None:
    if package is None:
        return None
    return await q.newest_file_sha256(conn, package.id, file_name)


def commit_checks(target: FileTarget, condition: WriteCondition | None
                  ) -> tuple[CommitCondition, ...]:
    """The commit's check, run while it holds the version's advisory lock (none without a
    condition: GitLab's upload is unchanged)."""
    if condition is None:
        return ()

    async def check(conn: asyncpg.Connection, package: Package | None) -> None:
        if not condition.holds(await _newest_sha256(conn, package, target.file_name)):
            raise PreconditionFailed()

    return (check,)


async def check_before_body(db: Database, project_id: int, target: FileTarget,
                            condition: WriteCondition | None) -> None:
    """The cheap refusal before a byte is streamed; the commit decides under the lock."""
    if condition is None:
        return
    async with db.connection() as conn:
        package = await q.find_live_package(
            conn, project_id, target.package_name, target.package_version
        )
        if not condition.holds(await _newest_sha256(conn, package, target.file_name)):
            raise PreconditionFailed()
