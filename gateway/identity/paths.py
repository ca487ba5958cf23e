"""GitLab's path rules for usernames, groups and projects (``Gitlab::PathRegex``)."""

from __future__ import annotations

import re

# GitLab's PathRegex in short: letters, digits, '_', '-', '.'; starts with a letter, digit or
# '_'; no two special characters in a row; never ends in '.', '.git' or '.atom'.
_PATH = re.compile(r"\A[a-zA-Z0-9_](?:[a-zA-Z0-9_]|[.-](?=[a-zA-Z0-9_]))*\Z")
PATH_TEXT = ("can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', "
             "end in '.git' or end in '.atom'")
USERNAME_TEXT = ("can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', "
                 "end in '.', '.git' or end in '.atom'")


def valid_path(path: str) -> bool:
    return bool(_PATH.match(path)) and not path.lower().endswith((".git", ".atom"))


def path_from_name(name: str) -> str:
    """GitLab's default project path: the name lower-cased, other characters as dashes."""
    slug = re.sub(r"[^a-z0-9_.]+", "-", name.lower())
    return re.sub(r"[._-]{2,}", "-", slug).strip("-._") or "project"
