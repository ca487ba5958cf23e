"""GitLab's enumerations, as values every layer may use: access levels, visibilities, user
states, package registry access, package statuses and types."""

from __future__ import annotations

# Access levels (``Gitlab::Access``); Minimal access exists for groups only.
NO_ACCESS, MINIMAL_ACCESS = 0, 5
GUEST, PLANNER, REPORTER, SECURITY_MANAGER = 10, 15, 20, 25
DEVELOPER, MAINTAINER, OWNER = 30, 40, 50
ACCESS_LEVELS = (GUEST, PLANNER, REPORTER, SECURITY_MANAGER, DEVELOPER, MAINTAINER, OWNER)
GROUP_ACCESS_LEVELS = (MINIMAL_ACCESS, *ACCESS_LEVELS)
# Project and group access tokens take these (``Gitlab::Access.options_with_owner``).
RESOURCE_TOKEN_LEVELS = (GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER)

# ``Gitlab::VisibilityLevel``: a project or subgroup is never more visible than its parent.
PRIVATE, INTERNAL, PUBLIC = "private", "internal", "public"
VISIBILITIES = (PRIVATE, INTERNAL, PUBLIC)
VISIBILITY_RANK = {PRIVATE: 0, INTERNAL: 10, PUBLIC: 20}

# User states; blocked and deactivated users' tokens are refused with these reasons.
ACTIVE, BLOCKED, DEACTIVATED = "active", "blocked", "deactivated"
REFUSED_STATES = {
    BLOCKED: "Your account has been blocked.",
    DEACTIVATED: "Your account has been deactivated by your administrator. "
    "Please log back in to reactivate your account.",
}

# ``package_registry_access_level`` (ProjectFeature).
REGISTRY_LEVELS = ("disabled", "private", "enabled", "public")
# What GitLab derives from ``packages_enabled: true`` for each visibility.
REGISTRY_LEVEL_FOR_VISIBILITY = {PRIVATE: "private", INTERNAL: "enabled", PUBLIC: "public"}

# Packages: GitLab's integer statuses and types.
PACKAGE_STATUS = {"default": 0, "hidden": 1, "processing": 2, "error": 3,
                  "pending_destruction": 4, "deprecated": 5}
PACKAGE_STATUS_NAME = {v: k for k, v in PACKAGE_STATUS.items()}
PACKAGE_FILE_STATUS_NAME = {0: "default", 1: "pending_destruction", 2: "processing", 3: "error"}
PACKAGE_TYPES = {"maven": 1, "npm": 2, "conan": 3, "nuget": 4, "pypi": 5, "composer": 6,
                 "generic": 7, "golang": 8, "debian": 9, "rubygems": 10, "helm": 11,
                 "terraform_module": 12, "rpm": 13, "ml_model": 14}
PACKAGE_TYPE_NAME = {v: k for k, v in PACKAGE_TYPES.items()}
