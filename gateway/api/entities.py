"""How users, groups, projects, members and tokens look in GitLab's JSON (``admin-api.md``)."""

from __future__ import annotations

from typing import Any

from gateway.api.present import iso, iso_date
from gateway.identity.policy import registry_access_level

# A blocked bot or user shows GitLab's state names; avatars are not kept.
_NOTIFICATION_GLOBAL = 3


def user_basic(row: Any, base: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "username": row.username,
        "name": row.name,
        "state": row.state,
        "locked": False,
        "avatar_url": None,
        "web_url": f"{base}/{row.username}",
    }


def user(row: Any, base: str) -> dict[str, Any]:
    """GitLab's User entity (``GET /users/:id`` for non-administrators)."""
    return {
        **user_basic(row, base),
        "created_at": iso(row.created_at),
        "bio": row.bio,
        "location": row.location,
        "public_email": row.public_email,
        "skype": "",
        "linkedin": "",
        "twitter": "",
        "discord": "",
        "website_url": row.website_url,
        "organization": row.organization,
        "job_title": row.job_title,
        "pronouns": None,
        "bot": row.bot,
        "work_information": None,
        "followers": 0,
        "following": 0,
    }


def user_public(row: Any, base: str) -> dict[str, Any]:
    """``GET /user``: the caller's own account."""
    return {
        **user(row, base),
        "last_sign_in_at": None,
        "confirmed_at": iso(row.confirmed_at),
        "last_activity_on": None,
        "email": row.email,
        "theme_id": 1,
        "color_scheme_id": 1,
        "projects_limit": row.projects_limit,
        "current_sign_in_at": None,
        "identities": [],
        "can_create_group": row.can_create_group,
        "can_create_project": row.projects_limit > 0,
        "two_factor_enabled": False,
        "external": row.external,
        "private_profile": row.private_profile,
        "commit_email": row.email,
    }


def user_with_admin(row: Any, base: str) -> dict[str, Any]:
    return {**user_public(row, base), "is_admin": row.is_admin, "note": row.note}


def group(row: Any, base: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "web_url": f"{base}/groups/{row.full_path}",
        "name": row.name,
        "path": row.path,
        "description": row.description,
        "visibility": row.visibility,
        "share_with_group_lock": False,
        "require_two_factor_authentication": False,
        "two_factor_grace_period": 48,
        "project_creation_level": "developer",
        "auto_devops_enabled": None,
        "subgroup_creation_level": "maintainer",
        "emails_disabled": False,
        "emails_enabled": True,
        "mentions_disabled": None,
        "lfs_enabled": True,
        "default_branch": None,
        "default_branch_protection": 2,
        "avatar_url": None,
        "request_access_enabled": True,
        "full_name": row.full_name or row.name,
        "full_path": row.full_path,
        "created_at": iso(row.created_at),
        "parent_id": row.parent_id,
        "organization_id": 1,
        "shared_runners_setting": "enabled",
        "marked_for_deletion_on": None,
    }


def project(row: Any, base: str, api_base: str) -> dict[str, Any]:
    kind = row.namespace_kind
    path = row.path_with_namespace
    level = row.access_level
    body: dict[str, Any] = {
        "id": row.id,
        "description": row.description,
        "name": row.name,
        "name_with_namespace": f"{row.namespace_full_name} / {row.name}",
        "path": row.path,
        "path_with_namespace": path,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "last_activity_at": iso(row.last_activity_at),
        "default_branch": None,
        "tag_list": [],
        "topics": [],
        "web_url": f"{base}/{path}",
        "avatar_url": None,
        "namespace": {
            "id": row.namespace_id,
            "name": row.namespace_name,
            "path": row.namespace_path,
            "kind": kind,
            "full_path": row.namespace_full_path,
            "parent_id": row.namespace_parent_id,
            "avatar_url": None,
            "web_url": f"{base}/{row.namespace_full_path}" if kind == "user"
            else f"{base}/groups/{row.namespace_full_path}",
        },
        "visibility": row.visibility,
        "creator_id": row.creator_id,
        "archived": False,
        "empty_repo": True,
        "packages_enabled": registry_access_level(row) != "disabled",
        "package_registry_access_level": registry_access_level(row),
        "_links": {
            "self": f"{api_base}/projects/{row.id}",
            "members": f"{api_base}/projects/{row.id}/members",
        },
        "permissions": {
            "project_access": {"access_level": level, "notification_level": _NOTIFICATION_GLOBAL}
            if level else None,
            "group_access": None,
        },
    }
    if kind == "user":
        body["owner"] = {
            "id": row.namespace_owner_id,
            "username": row.owner_username,
            "name": row.owner_name,
            "state": row.owner_state,
            "locked": False,
            "avatar_url": None,
            "web_url": f"{base}/{row.owner_username}",
        }
    return body


def member(row: Any, base: str) -> dict[str, Any]:
    body = {
        **user_basic(row, base),
        "access_level": row.access_level,
        "created_at": iso(row.created_at),
        "expires_at": iso_date(row.expires_at),
        "membership_state": "active",
    }
    if row.created_by is not None and row.created_by_username is not None:
        body["created_by"] = {
            "id": row.created_by,
            "username": row.created_by_username,
            "name": row.created_by_name,
            "state": row.created_by_state,
            "locked": False,
            "avatar_url": None,
            "web_url": f"{base}/{row.created_by_username}",
        }
    return body


def personal_access_token(row: Any, token: str | None = None) -> dict[str, Any]:
    """The token's plaintext is passed only by create and rotate, the one time it is shown."""
    body = {
        "id": row.id,
        "name": row.name,
        "revoked": row.revoked,
        "created_at": iso(row.created_at),
        "description": row.description,
        "scopes": list(row.scopes),
        "user_id": row.user_id,
        "last_used_at": iso(row.last_used_at),
        "active": not row.revoked and not row.expired,
        "expires_at": iso_date(row.expires_at),
        "expired": row.expired,
    }
    if token is not None:
        body["token"] = token
    return body


def resource_access_token(
    row: Any, resource_type: str, resource_id: int, token: str | None = None
) -> dict[str, Any]:
    return {
        **personal_access_token(row, token),
        "access_level": row.access_level,
        "resource_type": resource_type,
        "resource_id": resource_id,
    }


def deploy_token(row: Any, token: str | None = None) -> dict[str, Any]:
    body = {
        "id": row.id,
        "name": row.name,
        "username": row.username,
        "expires_at": iso(row.expires_at),
        "scopes": list(row.scopes),
        "revoked": row.revoked,
        "expired": row.expired,
    }
    if token is not None:
        body["token"] = token
    return body


def job_token(row: Any, token: str | None = None) -> dict[str, Any]:
    """packgate's CI job token (extension): ``id`` revokes it, ``token`` only when minted."""
    body: dict[str, Any] = {
        "id": row.id,
        "project_id": row.project_id,
        "user_id": row.user_id,
        "expires_at": iso(row.expires_at),
        "revoked": row.revoked,
        "created_at": iso(row.created_at),
    }
    if token is not None:
        body["token"] = token
    return body
