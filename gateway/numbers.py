"""Every number a client sends (path, query or body) is read here, once.

GitLab's Grape reads typed parameters with Ruby's ``Integer()``: ASCII digits only, so ``²``
or Arabic-Indic digits (``"٣".isdigit()`` is true in Python) are "invalid", never a crash.
Ids are PostgreSQL ``bigint``: a value past int64 names nothing, so it is "not found" where
GitLab looks a record up, and "invalid" elsewhere; it never reaches SQL.
"""

from __future__ import annotations

import re

from gateway.errors import GatewayError, InvalidParameters

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1  # GitLab's integer columns (``Gitlab::Database::MAX_INT_VALUE``)

# ``API::Helpers::INTEGER_ID_REGEX``: how GitLab tells an id from a path in ``:id``.
_INTEGER = re.compile(r"-?[0-9]+")


def parse_int(value: object, name: str, *, out_of_range: GatewayError | None = None) -> int:
    """An integer parameter: ``int``, an integral JSON number, or ASCII digits with an
    optional ``-``. Anything else is GitLab's 400 ``{"error": "<name> is invalid"}``; a value
    past int64 raises ``out_of_range`` (default: the same 400)."""
    if isinstance(value, bool):
        raise InvalidParameters([f"{name} is invalid"])
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2**64:
        number = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise InvalidParameters([f"{name} is invalid"])
    if not INT64_MIN <= number <= INT64_MAX:
        raise out_of_range or InvalidParameters([f"{name} is invalid"])
    return number


def fits_int64(number: int) -> bool:
    return INT64_MIN <= number <= INT64_MAX


def id_or_path(ref: str) -> int | str | None:
    """A project's or group's ``:id``: an integer id, else a full path; None when it is an
    integer no row can have (past int64)."""
    if _INTEGER.fullmatch(ref):
        number = int(ref)
        return number if fits_int64(number) else None
    return ref
