"""Entity tags of package files, and RFC 9110's ways of comparing them.

A file's ETag is its sha256 in quotes: strong (the same bytes, byte for byte) and the same on
every gateway, whichever of them stored or serves the file.
"""

from __future__ import annotations

ANY = "*"


def etag_of(sha256_hex: str) -> str:
    return f'"{sha256_hex}"'


def parse_etags(value: str) -> tuple[str, ...] | None:
    """The entity tags of an ``If-Match`` / ``If-None-Match`` value (``("*",)`` for ``*``);
    None when it cannot be parsed (the condition is then false, never a wildcard)."""
    text = value.strip()
    if text == ANY:
        return (ANY,)
    tags: list[str] = []
    for part in text.split(","):
        tag = part.strip()
        if not tag:
            continue
        opaque = tag[2:] if tag.startswith("W/") else tag
        if len(opaque) < 2 or opaque[0] != '"' or opaque[-1] != '"' or '"' in opaque[1:-1]:
            return None
        tags.append(tag)
    return tuple(tags) if tags else None


def strong_match(tags: tuple[str, ...], etag: str) -> bool:
    """RFC 9110's strong comparison (If-Match, If-Range): weak tags never match."""
    return ANY in tags or etag in tags


def weak_match(tags: tuple[str, ...], etag: str) -> bool:
    """RFC 9110's weak comparison (If-None-Match)."""
    return ANY in tags or any((t[2:] if t.startswith("W/") else t) == etag for t in tags)
