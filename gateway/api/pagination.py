"""GitLab's pagination: offset (``page``/``per_page`` in, X-* headers and ``Link`` out) and
keyset (``pagination=keyset``, the next page named by ``id_after``/``id_before`` in ``Link``).

python-gitlab follows ``Link: <…>; rel="next"`` and warns unless that URL starts with the base
URL it was given, so links are absolute and built from the external URL clients use.

Keyset pages, as GitLab's ``Gitlab::Pagination::Keyset`` (``lib/api/helpers/
pagination_strategies.rb``): asked for with ``pagination=keyset`` and ``order_by=id``; ordered
by id (``sort``); ``per_page`` as for offset pages; answered with no X-* header and, when there
is more, only ``Link: <…>; rel="next"`` whose URL is the request's with ``id_after``
(ascending) or ``id_before`` (descending) set to the last id of the page. The last page has no
``Link``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from gateway import keys
from gateway.api import forwarded
from gateway.errors import InvalidParameters, PaginationNotAvailable
from gateway.numbers import INT64_MAX, parse_int
from gateway.redact import without_credentials

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20
# Above this many rows GitLab stops counting: X-Total, X-Total-Pages and rel="last" are left out.
COUNT_LIMIT = 10_000
# GitLab's default plan limit ``offset_pagination_limit``: ``page * per_page`` above it is
# refused (405) for lists that can be read with keyset pages instead.
OFFSET_PAGINATION_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class Page:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def limit(self) -> int:
        return self.per_page


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return parse_int(raw, name)


def page_of(request: web.Request) -> Page:
    """The requested page; ``per_page`` is capped at 100, ``per_page=0`` is refused as GitLab
    does, and a page below 1 is read as page 1."""
    page = _int_param(request, "page", 1)
    per_page = _int_param(request, "per_page", DEFAULT_PER_PAGE)
    if per_page == 0:
        raise InvalidParameters(["per_page has a value not allowed"])
    if per_page < 0:
        per_page = DEFAULT_PER_PAGE
    result = Page(max(page, 1), min(per_page, MAX_PER_PAGE))
    if result.offset > INT64_MAX:  # no list is that long; PostgreSQL's OFFSET is a bigint
        raise InvalidParameters(["page is invalid"])
    return result


def bounded_page_of(request: web.Request, type_name: str) -> Page:
    """``page_of`` for a list that keyset pages can read to its end: past GitLab's offset
    limit, GitLab's 405 naming the record type (``Packages::Package``)."""
    page = page_of(request)
    if page.page * page.per_page > OFFSET_PAGINATION_LIMIT:
        raise PaginationNotAvailable(
            f"Offset pagination has a maximum allowed offset of {OFFSET_PAGINATION_LIMIT} for "
            f"requests that return objects of type {type_name}. Remaining records can be "
            "retrieved using keyset pagination."
        )
    return page


@dataclass(frozen=True, slots=True)
class Keyset:
    """A keyset page: ``per_page`` rows in id order (``sort``) after the id ``after`` (before
    it when descending; None: from the start)."""

    per_page: int
    sort: str
    after: int | None

    @property
    def limit(self) -> int:
        return self.per_page + 1  # one more than shown: is there a next page?


def wants_keyset(request: web.Request) -> bool:
    return request.query.get("pagination") == "keyset"


def keyset_of(request: web.Request, sort: str) -> Keyset:
    """The keyset page asked for: ``per_page`` as for offset pages, the bound from
    ``id_after`` (ascending) or ``id_before`` (descending)."""
    page = page_of(request)
    name = "id_after" if sort == "asc" else "id_before"
    raw = request.query.get(name)
    after = parse_int(raw, name) if raw not in (None, "") else None
    return Keyset(page.per_page, sort, after)


def keyset_headers(request: web.Request, keyset: Keyset, ids: list[int]) -> dict[str, str]:
    """``Link: <…>; rel="next"`` while there is more (``ids``: the rows fetched, one more than
    the page when there is a next page), nothing at the end."""
    if len(ids) <= keyset.per_page:
        return {}
    name, other = ("id_after", "id_before") if keyset.sort == "asc" else ("id_before",
                                                                            "id_after")
    base = external_base(request) + request.rel_url.raw_path
    params = {k: v for k, v in without_credentials(request.query.items())
              if k not in ("page", "per_page", name, other)}
    params |= {"per_page": str(keyset.per_page), name: str(ids[keyset.per_page - 1])}
    return {"Link": f'<{base}?{urlencode(sorted(params.items()))}>; rel="next"'}


def external_base(request: web.Request) -> str:
    """Scheme and host clients use: the configured URL, else the request's own, or the ones a
    trusted proxy forwarded (never forwarded headers from anyone else)."""
    configured = request.app[keys.settings].external_url
    if configured:
        return configured
    view = forwarded.client_view(request)
    return f"{view.scheme}://{view.host}"


def headers(request: web.Request, page: Page, total: int) -> dict[str, str]:
    """X-Page, X-Per-Page, X-Next-Page, X-Prev-Page, X-Total, X-Total-Pages and Link."""
    counted = total <= COUNT_LIMIT
    total_pages = max(1, -(-total // page.per_page))
    has_next = page.page < total_pages
    has_prev = page.page > 1
    # The raw path: a decoded one would turn `acme%2Ftools` into two segments (no route).
    base = external_base(request) + request.rel_url.raw_path
    # A token sent as ?private_token= is never handed back in a link.
    params = {k: v for k, v in without_credentials(request.query.items())
              if k not in ("page", "per_page")}

    def link(n: int, rel: str) -> str:
        query = urlencode(
            sorted({**params, "page": str(n), "per_page": str(page.per_page)}.items())
        )
        return f'<{base}?{query}>; rel="{rel}"'

    links = []
    if has_prev:
        links.append(link(page.page - 1, "prev"))
    if has_next:
        links.append(link(page.page + 1, "next"))
    links.append(link(1, "first"))
    if counted:
        links.append(link(total_pages, "last"))
    out = {
        "X-Page": str(page.page),
        "X-Per-Page": str(page.per_page),
        "X-Next-Page": str(page.page + 1) if has_next else "",
        "X-Prev-Page": str(page.page - 1) if has_prev else "",
        "Link": ", ".join(links),
    }
    if counted:
        out["X-Total"] = str(total)
        out["X-Total-Pages"] = str(total_pages)
    return out
