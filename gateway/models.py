"""The frozen values that cross layers: what ``db/`` returns and the services hand up.

Rows never leave ``db/`` as asyncpg records: each query's result becomes one of these, so a
handler reads ``user.username``, never a column of a record it cannot see the query of.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self


class _FromRow:
    """``from_row``: the fields the row has, in declaration order; absent columns keep their
    defaults (one dataclass serves the queries that select fewer columns)."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        values = {}
        for name in _field_names(cls):
            value = row.get(name, _ABSENT)
            if value is not _ABSENT:
                values[name] = value
        return cls(**values)

    @classmethod
    def from_optional(cls, row: Mapping[str, Any] | None) -> Self | None:
        return None if row is None else cls.from_row(row)


_ABSENT = object()
_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


@dataclass(frozen=True, slots=True)
class User(_FromRow):
    id: int
    username: str
    name: str
    email: str
    is_admin: bool = False
    state: str = "active"
    bot: bool = False
    external: bool = False
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    confirmed_at: dt.datetime | None = None
    can_create_group: bool = True
    projects_limit: int = 100000
    private_profile: bool = False
    note: str | None = None
    bio: str = ""
    location: str = ""
    organization: str = ""
    job_title: str = ""
    public_email: str | None = None
    website_url: str = ""
    bot_project_id: int | None = None
    bot_group_id: int | None = None
    # How many projects the user created in their personal namespace (projects_limit).
    personal_projects: int = 0


@dataclass(frozen=True, slots=True)
class Group(_FromRow):
    """A group namespace, with the caller's effective access level when read for a caller."""

    id: int
    name: str
    path: str
    full_path: str
    kind: str = "group"
    full_name: str | None = None
    parent_id: int | None = None
    owner_id: int | None = None
    visibility: str = "private"
    description: str = ""
    created_at: dt.datetime | None = None
    ancestor_ids: list[int] = dataclasses.field(default_factory=list)
    access_level: int = 0
    depth: int = 1  # levels from the top, this one included


@dataclass(frozen=True, slots=True)
class Project(_FromRow):
    """A project with its namespace and, when read for a caller, that caller's access."""

    id: int
    namespace_id: int
    name: str
    path: str
    description: str = ""
    visibility: str = "private"
    packages_enabled: bool = True
    package_registry_access_level: str | None = None
    creator_id: int | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    last_activity_at: dt.datetime | None = None
    path_with_namespace: str = ""
    namespace_kind: str = "group"
    namespace_owner_id: int | None = None
    namespace_name: str = ""
    namespace_path: str = ""
    namespace_full_path: str = ""
    namespace_full_name: str = ""
    namespace_parent_id: int | None = None
    namespace_visibility: str = "private"
    owner_username: str | None = None
    owner_name: str | None = None
    owner_state: str | None = None
    ancestor_ids: list[int] = dataclasses.field(default_factory=list)
    access_level: int = 0


@dataclass(frozen=True, slots=True)
class Member(_FromRow):
    """A membership as GitLab's Member entity shows it: the user and the level."""

    id: int  # the user's id, as GitLab's entity
    username: str
    name: str
    state: str
    access_level: int
    bot: bool = False
    created_at: dt.datetime | None = None
    expires_at: dt.date | None = None
    created_by: int | None = None
    created_by_username: str | None = None
    created_by_name: str | None = None
    created_by_state: str | None = None


@dataclass(frozen=True, slots=True)
class AccessToken(_FromRow):
    """A personal, project or group access token (never its secret)."""

    id: int
    user_id: int
    name: str
    scopes: list[str]
    revoked: bool
    expired: bool
    description: str | None = None
    expires_at: dt.date | None = None
    created_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    access_level: int | None = None
    bot_project_id: int | None = None
    bot_group_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeployToken(_FromRow):
    id: int
    name: str
    username: str
    scopes: list[str]
    revoked: bool
    expired: bool
    project_id: int | None = None
    group_id: int | None = None
    expires_at: dt.datetime | None = None
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class JobToken(_FromRow):
    id: int
    project_id: int
    user_id: int
    expires_at: dt.datetime
    revoked: bool = False
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    """A token just made: its secret (shown this once) and what is stored about it."""

    token: str
    record: Any


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list, and how many items the list has in all."""

    items: list[Any]
    total: int


# --- what authentication finds by a token's digest -------------------------------------------


@dataclass(frozen=True, slots=True)
class PatCredential(_FromRow):
    """A personal (project, group) access token and its user, as authentication needs them."""

    token_id: int
    token_digest: bytes
    scopes: list[str]
    expired: bool
    revoked: bool
    touch_due: bool
    user_id: int
    username: str
    is_admin: bool
    state: str
    external: bool
    bot: bool


@dataclass(frozen=True, slots=True)
class DeployCredential(_FromRow):
    token_id: int
    token_digest: bytes
    scopes: list[str]
    username: str
    project_id: int | None = None
    group_id: int | None = None


@dataclass(frozen=True, slots=True)
class JobCredential(_FromRow):
    token_id: int
    token_digest: bytes
    job_project_id: int
    user_id: int
    username: str
    is_admin: bool
    state: str
    external: bool
    bot: bool


# --- packages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Package(_FromRow):
    id: int
    project_id: int
    name: str
    version: str
    package_type: int = 7
    status: int = 0
    creator_id: int | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    last_downloaded_at: dt.datetime | None = None
    project_full_path: str | None = None  # lists over several projects carry it


@dataclass(frozen=True, slots=True)
class PackageFile(_FromRow):
    id: int
    package_id: int
    project_id: int
    file_name: str
    size: int
    file_md5: str
    file_sha1: str
    file_sha256: str
    object_key: str
    status: int = 0
    file_store: int = 2
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class PackageVersion(_FromRow):
    id: int
    version: str
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ProtectionRule(_FromRow):
    """A package protection rule (GitLab's ``Packages::Protection::Rule``)."""

    id: int
    project_id: int
    package_name_pattern: str
    package_type: int
    minimum_access_level_for_push: int | None = None
    minimum_access_level_for_delete: int | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent(_FromRow):
    id: int
    entity_type: str
    entity_id: int
    event_name: str
    author_id: int | None = None
    author_name: str = ""
    entity_path: str = ""
    target_type: str | None = None
    target_id: int | None = None
    target_details: str | None = None
    ip_address: str | None = None
    details: str = "{}"  # JSON text, as asyncpg hands jsonb over
    created_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit events a list or a lookup may see (None: no restriction)."""

    entity_type: str | None = None
    entity_id: int | None = None
    author_id: int | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
