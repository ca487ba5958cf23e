"""What counts as a credential in a request, and how to keep it out of what we print.

Used by the log lines (the last net before stderr) and by every URL the gateway builds from a
request (pagination links), so that a token sent as ``?private_token=`` never comes back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Query parameters that carry a token (GitLab's names; see Credentials.from_request).
CREDENTIAL_PARAMS = frozenset(
    {"private_token", "job_token", "token", "access_token", "bearer_token"}
)
# Headers whose value is a credential, lower-case.
CREDENTIAL_HEADERS = frozenset(
    {"private-token", "job-token", "deploy-token", "authorization", "cookie", "proxy-authorization"}
)

REDACTED = "[redacted]"

# GitLab's token prefixes (personal/project/group, deploy, CI job, runner, OAuth, feed, …),
# followed by the token's characters.
_TOKEN = re.compile(r"\bgl[a-z]{2,6}-[A-Za-z0-9_.\-]{8,}")
# "PRIVATE-TOKEN: value" (also inside a repr such as b'PRIVATE-TOKEN: value\x01'), and
# "Authorization: Basic xyz" / "Bearer xyz".
_HEADER = re.compile(
    r"(?i)\b(private-token|job-token|deploy-token|(?:proxy-)?authorization|cookie)"
    r"(['\"]?\s*[:=]\s*(?:b?['\"])?)(?:(?:basic|bearer|token)\s+)?[^\s'\"\\,;]+"
)
# private_token=value in a URL or a form body, also percent-encoded around the "=".
_PARAM = re.compile(
    r"(?i)\b(" + "|".join(sorted(CREDENTIAL_PARAMS, key=len, reverse=True)) + r")"
    r"(=|%3d)[^\s&'\"\\#]*"
)


def redact_text(text: str) -> str:
    """``text`` with every token, credential header value and credential parameter hidden."""
    if not text or (text.isascii() and not _may_hold_credential(text)):
        return text
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _TOKEN.sub(REDACTED, text)


def _may_hold_credential(text: str) -> bool:
    """Whether ASCII ``text`` holds what every pattern above starts with: most log text holds
    none, and one scan for these is cheaper than three substitutions (each access line runs
    its fields through here). Only for ASCII: case-insensitive matching also folds a few other
    letters (the Kelvin sign, a dotted I) onto these."""
    if "gl" in text:
        return True
    low = text.lower()
    return "token" in low or "authorization" in low or "cookie" in low


def is_credential_param(name: str) -> bool:
    return name.lower() in CREDENTIAL_PARAMS


def without_credentials(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query items less the ones that carry a credential (for URLs we hand back)."""
    return [(k, v) for k, v in items if not is_credential_param(k)]
