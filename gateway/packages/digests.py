"""Digests a client declares on an upload, checked against what was computed as the bytes
passed; and the digest fields the gateway answers with.

Accepted on ``PUT``: ``Content-MD5`` (RFC 1864, base64), Artifactory's ``X-Checksum-Md5``,
``X-Checksum-Sha1``, ``X-Checksum-Sha256`` (hex) and RFC 9530's ``Content-Digest`` and
``Repr-Digest`` (structured-field dictionaries of byte sequences; ``sha-256`` is checked).
A header that cannot be parsed is refused before a byte of the body is read; a digest that
does not match is refused once the body is in, and nothing is kept.

RFC 9530 lets a recipient ignore algorithms it does not know; a dictionary with none the
gateway checks is refused instead, so a client never believes unchecked bytes were verified.
The bodies of a dictionary are parsed by ``http-sf`` (RFC 8941/9651), not by hand.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import http_sf

from gateway.db.pool import Database
from gateway.errors import BadRequest
from gateway.hashing import Digests
from gateway.packages import commit
from gateway.storage import ObjectStore
from gateway.uploads import StoredObject

# The headers read on upload, as they are named in error messages.
CONTENT_MD5 = "Content-MD5"
CHECKSUM_HEADERS = {"X-Checksum-Md5": ("md5", 32), "X-Checksum-Sha1": ("sha1", 40),
                    "X-Checksum-Sha256": ("sha256", 64)}
FIELD_HEADERS = ("Content-Digest", "Repr-Digest")
UPLOAD_HEADERS = (CONTENT_MD5, *CHECKSUM_HEADERS, *FIELD_HEADERS)

# RFC 9530 algorithm keys the gateway computes, by the name of the Digests field.
_FIELD_ALGORITHMS = {"sha-256": "sha256"}
_HEX = re.compile(r"\A[0-9a-fA-F]+\Z")


class MalformedDigest(BadRequest):
    def __init__(self, header: str, why: str = "is not a valid digest") -> None:
        super().__init__(f"{header} {why}")


class DigestMismatch(BadRequest):
    def __init__(self, header: str, expected: str, received: str) -> None:
        super().__init__(f"{header} mismatch: expected {expected}, received {received}")


@dataclass(frozen=True, slots=True)
class Declared:
    """One digest a client declared: which header, which algorithm, the raw digest bytes."""

    header: str
    algorithm: str  # a field of Digests: md5, sha1, sha256
    value: bytes

    def shown(self, raw: bytes) -> str:
        """``raw`` as this header spells it (what the error message quotes)."""
        if self.header in CHECKSUM_HEADERS:
            return raw.hex()
        b64 = base64.b64encode(raw).decode()
        if self.header in FIELD_HEADERS:
            return f"{_key_of(self.algorithm)}=:{b64}:"
        return b64


def _key_of(algorithm: str) -> str:
    return next(k for k, v in _FIELD_ALGORITHMS.items() if v == algorithm)


def _single(header: str, values: Sequence[str]) -> str:
    if len(values) > 1:
        raise MalformedDigest(header, "is given more than once")
    return values[0].strip()


def _content_md5(values: Sequence[str]) -> Declared:
    text = _single(CONTENT_MD5, values)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedDigest(CONTENT_MD5) from None
    if len(raw) != 16:
        raise MalformedDigest(CONTENT_MD5)
    return Declared(CONTENT_MD5, "md5", raw)


def _checksum(header: str, values: Sequence[str]) -> Declared:
    algorithm, length = CHECKSUM_HEADERS[header]
    text = _single(header, values)
    if len(text) != length or not _HEX.match(text):
        raise MalformedDigest(header)
    return Declared(header, algorithm, bytes.fromhex(text))


def _field(header: str, values: Sequence[str]) -> list[Declared]:
    # Several field lines of one dictionary are one list joined by commas (RFC 9651 §4.2).
    text = ", ".join(values)
    try:
        members = http_sf.parse(text.encode("ascii"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        raise MalformedDigest(header) from None
    assert isinstance(members, dict)
    found = []
    for key, (value, _params) in members.items():
        if not isinstance(value, bytes):
            raise MalformedDigest(header)
        if key in _FIELD_ALGORITHMS:
            algorithm = _FIELD_ALGORITHMS[key]
            if len(value) != 32:
                raise MalformedDigest(header)
            found.append(Declared(header, algorithm, value))
    if not found:
        raise MalformedDigest(header, "has no supported algorithm (sha-256)")
    return found


def declared_digests(headers: Mapping[str, Sequence[str]]) -> tuple[Declared, ...]:
    """The digests in ``headers`` (every value of each of UPLOAD_HEADERS that is present).

    Raises MalformedDigest (400) for any that cannot be parsed; called before the body is read.
    """
    declared: list[Declared] = []
    for header in UPLOAD_HEADERS:
        values = headers.get(header) or ()
        if not values:
            continue
        if header == CONTENT_MD5:
            declared.append(_content_md5(values))
        elif header in CHECKSUM_HEADERS:
            declared.append(_checksum(header, values))
        else:
            declared.extend(_field(header, values))
    return tuple(declared)


def verify(declared: Sequence[Declared], computed: Digests) -> None:
    """Raises DigestMismatch (400) naming the first declared digest the bytes do not have."""
    for d in declared:
        raw = bytes.fromhex(getattr(computed, d.algorithm))
        if raw != d.value:
            raise DigestMismatch(d.header, d.shown(d.value), d.shown(raw))


def repr_digest(sha256_hex: str) -> str:
    """RFC 9530 ``Repr-Digest`` of a stored file: ``sha-256=:<base64>:``."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def wants_repr_digest(values: Sequence[str]) -> bool:
    """Whether ``Want-Repr-Digest`` asks for a digest the gateway has (sha-256).

    A preference, not a requirement: a value that cannot be parsed is ignored, as is a list of
    only unknown algorithms (RFC 9530 lets the server pick); ``sha-256=0`` refuses sha-256.
    """
    if not values:
        return False
    try:
        prefs = http_sf.parse(", ".join(values).encode("ascii"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return False
    assert isinstance(prefs, dict)
    weight = prefs.get("sha-256", (None, {}))[0]
    return not (isinstance(weight, int) and not isinstance(weight, bool) and weight == 0)


async def check_stored(db: Database, store: ObjectStore, stored: StoredObject,
                       declared: Sequence[Declared]) -> None:
    """The uploaded object has the declared digests, or it is removed (with its pending row)
    and DigestMismatch is raised: a refused upload leaves nothing."""
    try:
        verify(declared, stored.digests)
    except DigestMismatch:
        await commit.discard_object(db, store, stored.key)
        raise
