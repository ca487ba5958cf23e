"""Conditional downloads: the validators a file is served with, ``If-None-Match`` /
``If-Modified-Since`` (304) and ``Range`` / ``If-Range`` (206, 416), per RFC 9110.

Only one byte range is served; a request for several gets the whole file (RFC 9110 lets a
server ignore ``Range``), as does one that cannot be parsed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import RangeNotSatisfiable
from gateway.packages.etags import parse_etags, strong_match, weak_match

_RANGE = re.compile(r"\A\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*\Z", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Representation:
    """What the validators of a stored file are computed from."""

    etag: str
    last_modified: dt.datetime  # whole seconds, UTC: what Last-Modified can say
    size: int

    @classmethod
    def of(cls, etag: str, created_at: dt.datetime, size: int) -> Representation:
        return cls(etag, created_at.astimezone(dt.UTC).replace(microsecond=0), size)

    @property
    def http_date(self) -> str:
        return email.utils.format_datetime(self.last_modified, usegmt=True)


def _http_date(value: str) -> dt.datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def not_modified(headers: Mapping[str, str], rep: Representation) -> bool:
    """True when a GET/HEAD should be answered 304: ``If-None-Match`` matches the ETag (weak
    comparison) or, without ``If-None-Match``, nothing changed since ``If-Modified-Since``."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        tags = parse_etags(if_none_match)
        return tags is not None and weak_match(tags, rep.etag)
    since = headers.get("If-Modified-Since")
    if since is None:
        return False
    date = _http_date(since)
    return date is not None and rep.last_modified <= date


def _if_range_holds(value: str, rep: Representation) -> bool:
    text = value.strip()
    if text.startswith(('"', "W/")):
        tags = parse_etags(text)
        return tags is not None and len(tags) == 1 and strong_match(tags, rep.etag)
    date = _http_date(text)
    return date is not None and date == rep.last_modified


def requested_range(headers: Mapping[str, str], rep: Representation) -> tuple[int, int] | None:
    """The (first, last) byte to send, inclusive, or None for the whole file.

    Raises RangeNotSatisfiable (416, ``Content-Range: bytes */size``) for a range that starts
    at or past the end. ``If-Range`` that no longer matches means the whole file.
    """
    value = headers.get("Range")
    if value is None:
        return None
    if_range = headers.get("If-Range")
    if if_range is not None and not _if_range_holds(if_range, rep):
        return None
    m = _RANGE.match(value)
    if m is None or (not m[1] and not m[2]):
        return None  # several ranges, another unit, or not a range at all: the whole file
    if m[1]:
        first = int(m[1])
        last = min(int(m[2]), rep.size - 1) if m[2] else rep.size - 1
        if m[2] and int(m[2]) < first:
            return None  # an invalid range is ignored (RFC 9110 §14.1.1)
    else:
        suffix = int(m[2])
        if suffix == 0:
            raise RangeNotSatisfiable(rep.size)
        first, last = max(0, rep.size - suffix), rep.size - 1
    if first >= rep.size:
        raise RangeNotSatisfiable(rep.size)
    return first, last


def content_range(byte_range: tuple[int, int], size: int) -> str:
    return f"bytes {byte_range[0]}-{byte_range[1]}/{size}"
