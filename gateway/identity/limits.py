"""GitLab's model validations on sizes: text lengths, nesting depth, token lifetimes.

Each limit names the GitLab model it comes from. The texts are Rails' validation messages,
which GitLab renders as ``{"message": {"<field>": ["is too long (maximum is N characters)"]}}``.
"""

from __future__ import annotations

import datetime as dt

from gateway.errors import ValidationFailed

# app/models/namespace.rb: name and path 255 (URL_MAX_LENGTH), description 500; at most
# NUMBER_OF_ANCESTORS_ALLOWED = 20 ancestors (``nesting_level_allowed``).
GROUP_LIMITS = {"name": 255, "path": 255, "description": 500}
MAX_GROUP_ANCESTORS = 20
# app/models/project.rb: name and path 255, description 2,000.
PROJECT_LIMITS = {"name": 255, "path": 255, "description": 2000}
# app/models/user.rb (name 255; username is a namespace path, 255), user_detail.rb (bio 255,
# job_title 200, location, organization and website_url 500), Devise's password 8..128.
USER_LIMITS = {"name": 255, "username": 255, "email": 255, "bio": 255, "job_title": 200,
               "location": 500, "organization": 500, "website_url": 500, "public_email": 255,
               "note": 10_000}
PASSWORD_MIN, PASSWORD_MAX = 8, 128
# personal_access_tokens.description is limited to 255 (migration AddDescriptionToPersonal-
# AccessTokens); the name is a string column of the same width.
TOKEN_LIMITS = {"name": 255, "description": 255}
# deploy_tokens name and username are strings (255).
DEPLOY_TOKEN_LIMITS = {"name": 255, "username": 255}


def too_long(fields: dict[str, object], limits: dict[str, int]) -> dict[str, list[str]]:
    """The fields over their limit, with Rails' message."""
    return {
        name: [f"is too long (maximum is {limit} characters)"]
        for name, limit in limits.items()
        if isinstance(fields.get(name), str) and len(fields[name]) > limit  # type: ignore[arg-type]
    }


def check_lengths(fields: dict[str, object], limits: dict[str, int]) -> None:
    """GitLab's 400 ``{"message": {field: [text]}}`` for the first fields over their limit."""
    if problems := too_long(fields, limits):
        raise ValidationFailed(problems)


def max_token_expiry(max_days: int, today: dt.date | None = None) -> dt.date:
    """The latest ``expires_at`` a new or rotated token may have (GitLab's
    ``expires_at_before_instance_max_expiry_date``: today + the maximum lifetime)."""
    return (today or dt.datetime.now(dt.UTC).date()) + dt.timedelta(days=max_days)


def expiry_error(expires_at: dt.date | None, max_days: int) -> str | None:
    """``Expires at must be before <date>`` when ``expires_at`` is past the lifetime cap."""
    latest = max_token_expiry(max_days)
    if expires_at is not None and expires_at > latest:
        return f"Expires at must be before {latest.isoformat()}"
    return None
