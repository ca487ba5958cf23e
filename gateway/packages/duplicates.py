"""A namespace's duplicate policy (GitLab's namespace package settings): the rule, its
exception regex (RE2, as GitLab), the checks before streaming and at the commit, and the
settings API's reads and writes."""

from __future__ import annotations

import functools
import logging
from typing import Any

import re2

from gateway.auth import Principal
from gateway.db import packages as q
from gateway.db.pool import Database
from gateway.errors import BadRequest, GatewayError, NotFound
from gateway.governance import audit
from gateway.models import UploadTarget
from gateway.naming import FileTarget

log = logging.getLogger("gateway.packages")

EXCEPTION_REGEX_MAX = 255


class DuplicateNotAllowed(BadRequest):
    def __init__(self) -> None:
        super().__init__("Duplicate package is not allowed")


class InvalidSettings(GatewayError):
    """A model validation failure, in GitLab's shape: ``{"message": {field: [texts]}}``."""

    status = 400

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("400 Bad request")

    def body(self) -> dict[str, Any]:
        return {"message": self.errors}


# GitLab evaluates the exception pattern with RE2 (``Gitlab::UntrustedRegexp``), so we do too:
# the same syntax is accepted (POSIX classes, \pN, \z) and refused (backreferences,
# lookaround), and matching runs in linear time, so a stored pattern cannot stall an upload.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is an answer to the user, not a log line


@functools.lru_cache(maxsize=256)
def _anchored(pattern: str) -> Any:
    # GitLab pastes the pattern between \A and \z without a group: a top-level "|" binds
    # loosely (``a|b`` is "starts with a" or "ends with b"). Kept on purpose.
    return re2.compile(r"\A" + pattern + r"\z", _RE2_OPTIONS)


def _exception_matches(pattern: str, value: str) -> bool:
    # UntrustedRegexp#match? never matches an empty value.
    if not value:
        return False
    try:
        return _anchored(pattern).search(value) is not None
    except re2.error:
        log.warning("stored duplicate exception regex does not compile: %r", pattern)
        return False


def exception_regex_errors(pattern: str) -> list[str]:
    """GitLab's validations of ``generic_duplicate_exception_regex``, as its messages."""
    errors = []
    try:
        re2.compile(pattern, _RE2_OPTIONS)
        _anchored(pattern)
    except re2.error as exc:
        errors.append(f"not valid RE2 syntax: {_re2_message(exc)}")
    if len(pattern) > EXCEPTION_REGEX_MAX:
        errors.append(f"is too long (maximum is {EXCEPTION_REGEX_MAX} characters)")
    return errors


def _re2_message(exc: Exception) -> str:
    msg = exc.args[0] if exc.args else str(exc)
    return msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)


def duplicates_allowed(allowed: bool, exception_regex: str, name: str, version: str) -> bool:
    """GitLab's rule: the exception regex inverts the toggle for matching names or versions."""
    match = _exception_matches(exception_regex, name) or _exception_matches(
        exception_regex, version
    )
    return not match if allowed else match


def duplicate_refused(found: UploadTarget, target: FileTarget) -> bool:
    """The file is already in the package and the namespace's policy refuses duplicates."""
    if not found.file_exists:
        return False
    return not duplicates_allowed(
        found.duplicates_allowed,
        found.duplicate_exception_regex,
        target.package_name,
        target.package_version,
    )


def refuse_duplicate(found: UploadTarget, target: FileTarget) -> None:
    """The refusal before a byte is streamed, from a look already made (the commit checks
    again under the lock)."""
    if duplicate_refused(found, target):
        raise DuplicateNotAllowed()


async def check_duplicate(db: Database, project_id: int, target: FileTarget, *,
                          pending: tuple[str, str] | None = None) -> None:
    """The cheap refusal before a byte is streamed; the commit checks again under the lock.

    ``pending`` (object key, instance): the same round trip records the upload's pending row
    (the sweeper's guarantee starts before any byte can reach the store); a refusal drops it.
    """
    async with db.connection() as conn:
        name, version, file_name = target.package_name, target.package_version, target.file_name
        if pending is None:
            found = await q.upload_target(conn, project_id, name, version, file_name)
        else:
            found = await q.upload_target_recording_pending(conn, project_id, name, version,
                                                            file_name, *pending)
        if duplicate_refused(found, target):
            if pending is not None:
                await q.delete_pending_upload(conn, pending[0])
            raise DuplicateNotAllowed()


async def package_settings(db: Database, group_id: int) -> dict[str, Any]:
    async with db.connection() as conn:
        row = await q.package_settings(conn, group_id)
    if row is None:
        raise NotFound("Group")
    return row


async def update_package_settings(
    db: Database, who: Principal, group_id: int, *, allowed: bool | None,
    exception_regex: str | None,
) -> dict[str, Any]:
    """Change the fields given; an invalid regex changes nothing (GitLab's 400 shape)."""
    if exception_regex is not None and (errors := exception_regex_errors(exception_regex)):
        raise InvalidSettings({"generic_duplicate_exception_regex": errors})
    async with db.transaction() as conn:
        row = await q.update_package_settings(conn, group_id, allowed, exception_regex)
        if row is None:
            raise NotFound("Group")
        await audit.record(conn, who, "package_settings_updated", entity_type="Group",
                           entity_id=group_id, message="Changed the package settings", **row)
    return row
