"""GitLab's rules for generic package names, versions and file paths.

Checked before a byte of an upload's body is read. The regexes are GitLab's, translated to
Python faithfully: ``\\Z`` for Ruby's ``\\z`` and ASCII classes for Ruby's ``\\w``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from gateway.errors import InvalidParameters, NoRoute

PACKAGE_NAME_RE = re.compile(r"\A[A-Za-z0-9._+-]+\Z")
PACKAGE_VERSION_RE = re.compile(r"\A(?!.*\.\.)[A-Za-z0-9_+.-]+\Z")
FILE_NAME_RE = re.compile(r"\A(?!~)(?!@)[A-Za-z0-9._+~@-]+(?<!~)(?<!@)\Z")
_TRAVERSAL_RE = re.compile(r"(\A(\.{1,2})\Z|\A\.\.[/\\]|[/\\]\.\.\Z|[/\\]\.\.[/\\]|\n)")

# Downloads only: the newest version holding the file. GitLab's version regex refuses "@", so
# no real version can be spelled so (a version named "latest" stays an ordinary version).
LATEST_VERSION = "@latest"

PACKAGE_STATUSES = ("default", "hidden")
SELECT_VALUES = ("package_file",)

_KEEP = frozenset(b"*-._0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def encode_uri_component(s: str) -> str:
    """Ruby's ``URI.encode_uri_component``: keeps only ``A-Za-z0-9*-._``."""
    return "".join(chr(b) if b in _KEEP else f"%{b:02X}" for b in s.encode())


def valid_file_path(value: str) -> bool:
    """GitLab's path-traversal check (``file_path: true``)."""
    decoded = unquote_plus(value)
    return (
        decoded == unquote_plus(decoded)
        and not _TRAVERSAL_RE.search(decoded)
        and not decoded.startswith("/")
    )


@dataclass(frozen=True, slots=True)
class FileTarget:
    """One file of a generic package, as named by the URL."""

    package_name: str
    package_version: str
    file_name: str  # as stored: percent-encoded ``path/file`` when a sub-path is given
    path: str | None = None


def split_generic_path(raw_tail: str) -> tuple[str, str, str | None, str]:
    """Split the raw (still percent-encoded) URL part after ``/generic/``.

    Returns (package_name, package_version, path, file_name), each percent-decoded once.
    Fewer than three segments is no route at all, as on GitLab.
    """
    segments = raw_tail.split("/")
    if len(segments) < 3:
        raise NoRoute()
    name, version, *middle, file_name = (unquote(s) for s in segments)
    path = "/".join(middle) if middle else None
    return name, version, path, file_name


def _check_name_version_file(name: str, version: str, file_name: str, *,
                             latest_ok: bool = False) -> list[str]:
    errors: list[str] = []
    if not PACKAGE_NAME_RE.search(name):
        errors.append("package_name is invalid")
    elif not valid_file_path(name):
        errors.append("package_name should be a valid file path")
    if latest_ok and version == LATEST_VERSION:
        pass
    elif not PACKAGE_VERSION_RE.search(version):
        errors.append("package_version is invalid")
    if not FILE_NAME_RE.search(file_name):
        errors.append("file_name is invalid")
    elif not valid_file_path(file_name):
        errors.append("file_name should be a valid file path")
    return errors


def file_target(raw_tail: str, status: str | None = None, *, latest_ok: bool = False
                ) -> FileTarget:
    """Validate name, version, file name and status; raises GitLab's 400 (all failures joined).
    ``latest_ok``: the version may be LATEST_VERSION (downloads)."""
    name, version, path, file_name = split_generic_path(raw_tail)
    errors = _check_name_version_file(name, version, file_name, latest_ok=latest_ok)
    if status is not None and status not in PACKAGE_STATUSES:
        errors.append("status does not have a valid value")
    if errors:
        raise InvalidParameters(errors)
    stored = file_name if path is None else encode_uri_component(f"{path}/{file_name}")
    return FileTarget(name, version, stored, path)


def check_late_parameters(target: FileTarget, select: str | None) -> None:
    """``path`` and ``select``: GitLab validates these after the project and role checks."""
    errors: list[str] = []
    if target.path is not None and not valid_file_path(target.path):
        errors.append("path should be a valid file path")
    if select is not None and select not in SELECT_VALUES:
        errors.append("select does not have a valid value")
    if errors:
        raise InvalidParameters(errors)


def download_target(raw_tail: str, *, latest_ok: bool = False) -> FileTarget:
    """On GET/HEAD every parameter, ``path`` included, is checked before authentication."""
    target = file_target(raw_tail, latest_ok=latest_ok)
    check_late_parameters(target, None)
    return target


def package_target(raw_tail: str) -> tuple[str, str]:
    """``name/version`` (delete of a whole version): both validated as on upload."""
    segments = raw_tail.split("/")
    if len(segments) != 2:
        raise NoRoute()
    name, version = (unquote(s) for s in segments)
    errors = _check_name_version_file(name, version, "x")
    if errors:
        raise InvalidParameters(errors)
    return name, version


def content_disposition(file_name: str) -> str:
    """Rails' ``ContentDisposition.format(disposition: "attachment", filename: ...)``."""
    ascii_name = file_name.encode("ascii", "replace").decode().replace("?", "_")
    quoted = re.sub(
        r"[^ A-Za-z0-9!#$+.^_`|~-]", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()),
        ascii_name,
    )
    star = re.sub(
        r"[^A-Za-z0-9!#$&+.^_`|~-]", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()),
        file_name,
    )
    return f"attachment; filename=\"{quoted}\"; filename*=UTF-8''{star}"
