"""Users, projects and tokens: the services behind bootstrap, `gateway dev` and the admin API."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any

import asyncpg

from gateway import auth
from gateway.db import identity
from gateway.errors import ApiError, BadRequest, Conflict, InvalidParameters, ValidationFailed

ADMIN_USERNAME = "root"

# Reads, and changes with no rule of their own, that the API uses as they are.
add_member = identity.add_member
delete_deploy_token = identity.delete_deploy_token
delete_namespace = identity.delete_namespace
delete_project = identity.delete_project
deploy_token_in = identity.deploy_token_in
find_user_by_username = identity.find_user_by_username
group_and_descendant_ids = identity.group_and_descendant_ids
list_deploy_tokens = identity.list_deploy_tokens
list_groups = identity.list_groups
list_members = identity.list_members
list_pats = identity.list_pats
list_projects = identity.list_projects
list_users = identity.list_users
namespace_by_id = identity.namespace_by_id
pat_by_id = identity.pat_by_id
remove_member = identity.remove_member
set_user_state = identity.set_user_state
update_member = identity.update_member
user_by_id = identity.user_by_id
user_namespace = identity.user_namespace


async def ensure_admin(conn: asyncpg.Connection) -> asyncpg.Record:
    """The administrator, created on first use (GitLab's first user is ``root`` too)."""
    user = await identity.find_user_by_username(conn, ADMIN_USERNAME)
    if user is None:
        user = await identity.insert_user(
            conn, ADMIN_USERNAME, "Administrator", "admin@example.com", is_admin=True
        )
    return user


async def create_personal_access_token(
    conn: asyncpg.Connection,
    user_id: int,
    name: str,
    scopes: list[str],
    expires_at: dt.date | None = None,
    description: str | None = None,
) -> tuple[str, asyncpg.Record]:
    """A new token for ``user_id``: the plaintext (show it once) and the stored row."""
    token, digest = auth.new_token(auth.PAT_PREFIX)
    row = await conn.fetchrow(
        identity.INSERT_PERSONAL_ACCESS_TOKEN, user_id, name, digest, scopes, expires_at,
        description,
    )
    return token, row


async def bootstrap(conn: asyncpg.Connection, token_name: str = "bootstrap") -> str:
    """Ensure the administrator exists and return a new ``api`` token for it."""
    async with conn.transaction():
        admin = await ensure_admin(conn)
        token, _ = await create_personal_access_token(conn, admin["id"], token_name, ["api"])
    return token


async def ensure_project(
    conn: asyncpg.Connection, group_path: str, project_path: str, *, owner_id: int,
    visibility: str = "private",
) -> asyncpg.Record:
    """A group and a project in it, created if missing (the `gateway dev` demo)."""
    async with conn.transaction():
        group = await identity.find_namespace_by_full_path(conn, group_path)
        if group is None:
            group = await conn.fetchrow(
                identity.INSERT_GROUP, group_path, group_path, group_path, None, visibility, ""
            )
            await conn.execute(identity.INSERT_GROUP_MEMBER_IF_MISSING, group["id"], owner_id, 50)
        project = await conn.fetchrow(
            identity.FIND_PROJECT_IN_NAMESPACE, group["id"], project_path
        )
        if project is None:
            project = await conn.fetchrow(
                identity.INSERT_PROJECT, group["id"], project_path, project_path, "",
                visibility, True, owner_id,
            )
    return project


async def mint_job_token(
    conn: asyncpg.Connection, project_id: int, user_id: int, expires_in: int
) -> tuple[str, asyncpg.Record]:
    token, digest = auth.new_token(auth.JOB_PREFIX)
    row = await conn.fetchrow(identity.INSERT_JOB_TOKEN, project_id, user_id, digest, expires_in)
    return token, row


# --- validation shared by the administration API ------------------------------------------

# GitLab's PathRegex in short: letters, digits, '_', '-', '.'; starts with a letter, digit or
# '_'; no two special characters in a row; never ends in '.', '.git' or '.atom'.
_PATH = re.compile(r"\A[a-zA-Z0-9_](?:[a-zA-Z0-9_]|[.-](?=[a-zA-Z0-9_]))*\Z")
_PATH_TEXT = ("can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', "
              "end in '.git' or end in '.atom'")
_USERNAME_TEXT = ("can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', "
                  "end in '.', '.git' or end in '.atom'")

PAT_SCOPES = frozenset({
    "api", "read_api", "read_user", "read_repository", "write_repository", "read_registry",
    "write_registry", "sudo", "admin_mode", "create_runner", "manage_runner", "ai_features",
    "k8s_proxy", "self_rotate", "read_service_ping", "read_virtual_registry",
    "write_virtual_registry",
})
# Project and group access tokens take the PAT scopes a bot may hold.
RESOURCE_TOKEN_SCOPES = PAT_SCOPES - {"sudo", "admin_mode", "read_service_ping"}
DEPLOY_TOKEN_SCOPES = frozenset({
    "read_repository", "read_registry", "write_registry", "read_package_registry",
    "write_package_registry", "read_virtual_registry", "write_virtual_registry",
})
ACCESS_LEVELS = (10, 15, 20, 25, 30, 40, 50)
MINIMAL_ACCESS = auth.MINIMAL_ACCESS  # groups only
VISIBILITIES = ("private", "internal", "public")
REGISTRY_LEVELS = ("disabled", "private", "enabled", "public")
DEFAULT_TOKEN_DAYS = 365  # GitLab's maximum lifetime, used when no expiry is given
ROTATED_TOKEN_DAYS = 7  # a rotated token without an explicit expiry lives a week


def valid_path(path: str) -> bool:
    return bool(_PATH.match(path)) and not path.lower().endswith((".git", ".atom"))


def path_from_name(name: str) -> str:
    """GitLab's default project path: the name lower-cased, other characters as dashes."""
    slug = re.sub(r"[^a-z0-9_.]+", "-", name.lower())
    return re.sub(r"[._-]{2,}", "-", slug).strip("-._") or "project"


def hash_password(password: str) -> str:
    """Salted scrypt: account passwords never authenticate API calls, but are not kept plain."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_scopes(scopes: object, allowed: frozenset[str]) -> list[str]:
    """``scopes`` as an array or a comma-separated string; Grape's 400 for unknown values."""
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    if not isinstance(scopes, list) or not scopes:
        raise InvalidParameters(["scopes is missing"])
    if not all(isinstance(s, str) and s in allowed for s in scopes):
        raise InvalidParameters(["scopes does not have a valid value"])
    return list(dict.fromkeys(scopes))


def parse_date(value: object, name: str) -> dt.date | None:
    if value is None or value == "":
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidParameters([f"{name} is invalid"]) from None


def parse_datetime(value: object, name: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    text = str(value).replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameters([f"{name} is invalid"]) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# --- users --------------------------------------------------------------------------------


async def create_user(conn: asyncpg.Connection, fields: dict[str, Any]) -> asyncpg.Record:
    """A user as ``POST /users`` makes it: email checked first, then username (409s)."""
    username, password = fields["username"], fields.pop("password", None)
    async with conn.transaction():
        if await identity.email_taken(conn, fields["email"]):
            raise Conflict("Email has already been taken")
        if await identity.username_taken(conn, username):
            raise Conflict("Username has already been taken")
        problems: dict[str, list[str]] = {}
        if not valid_path(username):
            problems["username"] = [_USERNAME_TEXT]
        if password is not None and len(password) < 8:
            problems["password"] = ["is too short (minimum is 8 characters)"]
        if "@" not in fields["email"]:
            problems["email"] = ["is invalid"]
        if problems:
            raise ValidationFailed(problems)
        if password is not None:
            fields["password_digest"] = hash_password(password)
        return await identity.create_user(conn, fields)


async def update_user(
    conn: asyncpg.Connection, user_id: int, fields: dict[str, Any]
) -> asyncpg.Record:
    password = fields.pop("password", None)
    async with conn.transaction():
        if "email" in fields and await identity.email_taken(conn, fields["email"], user_id):
            raise Conflict("Email has already been taken")
        if "username" in fields:
            if await identity.username_taken(conn, fields["username"], user_id):
                raise Conflict("Username has already been taken")
            if not valid_path(fields["username"]):
                raise ValidationFailed({"username": [_USERNAME_TEXT]})
        if password is not None:
            if len(password) < 8:
                raise ValidationFailed({"password": ["is too short (minimum is 8 characters)"]})
            fields["password_digest"] = hash_password(password)
        return await identity.update_user(conn, user_id, fields)


async def delete_user(conn: asyncpg.Connection, user_id: int, *, hard_delete: bool) -> None:
    """Every token of the user goes with it (rows cascade)."""
    async with conn.transaction():
        if not hard_delete and await identity.sole_owned_groups(conn, user_id):
            raise Conflict("User cannot be removed while is the sole-owner of a group")
        await identity.delete_user(conn, user_id)


# --- personal, project and group access tokens --------------------------------------------


def default_expiry(days: int = DEFAULT_TOKEN_DAYS) -> dt.date:
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)


async def revoke_personal_access_token(conn: asyncpg.Connection, token_id: int) -> bool:
    return await identity.revoke_pat(conn, token_id)


async def rotate_personal_access_token(
    conn: asyncpg.Connection, old: asyncpg.Record, expires_at: dt.date | None
) -> tuple[str, asyncpg.Record]:
    """A new token (new id) with the old one's name, scopes and role; the old one is revoked."""
    token, digest = auth.new_token(auth.PAT_PREFIX)
    async with conn.transaction():
        if not await identity.revoke_pat(conn, old["id"]):
            raise BadRequest("Token already revoked")
        row = await identity.insert_token(
            conn, old["user_id"], old["name"], digest, list(old["scopes"]),
            expires_at or default_expiry(ROTATED_TOKEN_DAYS), old["description"],
            old["access_level"], old["id"],
        )
    return token, row


async def create_resource_token(
    conn: asyncpg.Connection, source: str, source_id: int, *, name: str, scopes: list[str],
    access_level: int, expires_at: dt.date | None, description: str | None,
    created_by: int | None, host: str,
) -> tuple[str, asyncpg.Record]:
    """A project or group access token: a new bot user, a member of that one project or group
    with ``access_level``, holding one token."""
    suffix = secrets.token_hex(4)
    username = f"{source}_{source_id}_bot_{suffix}"
    token, digest = auth.new_token(auth.PAT_PREFIX)
    async with conn.transaction():
        bot = await identity.create_user(conn, {
            "username": username, "name": name, "email": f"{username}@noreply.{host}",
            "bot": True, "can_create_group": False, "projects_limit": 0,
            "bot_project_id": source_id if source == "project" else None,
            "bot_group_id": source_id if source == "group" else None,
        })
        await identity.add_member(conn, source, source_id, bot["id"], access_level, None,
                                  created_by)
        row = await identity.insert_token(
            conn, bot["id"], name, digest, scopes, expires_at or default_expiry(), description,
            access_level,
        )
    return token, row


async def revoke_resource_token(
    conn: asyncpg.Connection, source: str, source_id: int, token: asyncpg.Record
) -> None:
    """Revoked, and its bot leaves the project or group (GitLab removes the bot)."""
    async with conn.transaction():
        await identity.revoke_pat(conn, token["id"])
        await identity.remove_member(conn, source, source_id, token["user_id"])
        await identity.set_user_state(conn, token["user_id"], "blocked")


# --- deploy tokens --------------------------------------------------------------------------


_DEPLOY_USERNAME = re.compile(r"\A[a-zA-Z0-9_.+-]+\Z")


async def create_deploy_token(
    conn: asyncpg.Connection, *, project_id: int | None = None, group_id: int | None = None,
    name: str, scopes: list[str], expires_at: dt.datetime | None, username: str | None,
) -> tuple[str, asyncpg.Record]:
    if username is not None and not _DEPLOY_USERNAME.match(username):
        raise BadRequest("Username can contain only letters, digits, '_', '-', '+', and '.'")
    token, digest = auth.new_token(auth.DEPLOY_PREFIX)
    row = await identity.insert_deploy_token(
        conn, project_id, group_id, name, username, digest, scopes, expires_at
    )
    return token, row


# --- groups and projects ------------------------------------------------------------------


async def create_group(
    conn: asyncpg.Connection, *, name: str, path: str, visibility: str, description: str,
    parent: asyncpg.Record | None, owner_id: int | None,
) -> asyncpg.Record:
    """A group (a subgroup under ``parent``); its creator becomes its Owner, as on GitLab."""
    if not valid_path(path):
        raise ApiError(f'Failed to save group {{:path=>["{_PATH_TEXT}"]}}', 400)
    full_path = f"{parent['full_path']}/{path}" if parent else path
    async with conn.transaction():
        if await identity.group_path_taken(conn, full_path):
            raise ApiError('Failed to save group {:path=>["has already been taken"]}', 400)
        group = await identity.create_group(
            conn, name, path, visibility, description, parent["id"] if parent else None
        )
        if owner_id is not None:
            await identity.add_member(conn, "group", group["id"], owner_id, auth.OWNER, None,
                                      owner_id)
    return group


async def update_group(
    conn: asyncpg.Connection, group: asyncpg.Record, fields: dict[str, Any]
) -> None:
    async with conn.transaction():
        if "path" in fields:
            path = fields["path"]
            if not valid_path(path):
                raise ValidationFailed({"path": [_PATH_TEXT]})
            parent = group["full_path"].rpartition("/")[0]
            full_path = f"{parent}/{path}" if parent else path
            if await identity.group_path_taken(conn, full_path, group["id"]):
                raise ValidationFailed({"path": ["has already been taken"]})
        await identity.update_group(conn, group["id"], fields)


async def create_project(
    conn: asyncpg.Connection, namespace_id: int, fields: dict[str, Any], creator_id: int | None,
) -> asyncpg.Record:
    """A project in a namespace; in a personal namespace its owner becomes the project's Owner
    (``Projects::CreateService``)."""
    problems: dict[str, list[str]] = {}
    if not valid_path(fields["path"]):
        problems["path"] = [_PATH_TEXT]
    async with conn.transaction():
        for taken in await identity.project_path_taken(
            conn, namespace_id, fields["path"], fields["name"]
        ):
            problems[taken] = ["has already been taken"]
        if problems:
            raise ValidationFailed(problems)
        project = await identity.create_project(conn, namespace_id, fields, creator_id)
        namespace = await identity.namespace_by_id(conn, namespace_id)
        if namespace["kind"] == "user":
            await identity.add_member(conn, "project", project["id"], namespace["owner_id"],
                                      auth.OWNER, None, creator_id)
    return project


def registry_fields(fields: dict[str, Any], visibility: str) -> None:
    """Keep ``packages_enabled`` and ``package_registry_access_level`` consistent, as GitLab's
    ``set_package_registry_access_level`` does: setting one sets the other."""
    level = fields.get("package_registry_access_level")
    if level is not None:
        fields["packages_enabled"] = level != "disabled"
    elif "packages_enabled" in fields:
        fields["package_registry_access_level"] = (
            {"private": "private", "internal": "enabled", "public": "public"}[visibility]
            if fields["packages_enabled"] else "disabled"
        )


async def update_project(
    conn: asyncpg.Connection, project: asyncpg.Record, fields: dict[str, Any]
) -> None:
    async with conn.transaction():
        problems: dict[str, list[str]] = {}
        if "path" in fields and not valid_path(fields["path"]):
            problems["path"] = [_PATH_TEXT]
        for taken in await identity.project_path_taken(
            conn, project["namespace_id"], fields.get("path", ""), fields.get("name", ""),
            project["id"],
        ):
            problems[taken] = ["has already been taken"]
        if problems:
            raise ValidationFailed(problems)
        await identity.update_project(conn, project["id"], fields)


def random_password() -> str:
    """For ``reset_password`` / ``force_random_password``: a password nobody knows."""
    return secrets.token_urlsafe(24)
