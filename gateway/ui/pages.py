"""The pages one reads: projects, a project's packages, a package, a file, and downloads."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from gateway import auth, keys
from gateway.api.pagination import external_base
from gateway.enums import PACKAGE_STATUS, PACKAGE_STATUS_NAME, PACKAGE_TYPE_NAME, PACKAGE_TYPES
from gateway.errors import InvalidParameters, NotFound, RecordNotFound
from gateway.identity import policy
from gateway.identity import projects as project_service
from gateway.naming import content_disposition
from gateway.numbers import parse_int
from gateway.packages import downloads, listing
from gateway.storage import ObjectNotFound
from gateway.ui import commands, render, session

PER_PAGE = 20
MAX_PER_PAGE = 100
ORDER_BY = ("created_at", "name", "version", "type")
SORT = ("desc", "asc")


@dataclass(frozen=True, slots=True)
class Pager:
    """Page links that keep the other parameters of the page."""

    path: str
    params: dict[str, str]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def url(self, page: int) -> str:
        params = {k: v for k, v in self.params.items() if v and k != "page"}
        if page > 1:
            params["page"] = str(page)
        return self.path + ("?" + urlencode(params) if params else "")


def _page_numbers(request: web.Request) -> tuple[int, int]:
    q = request.query
    page = _small_int(q.get("page"), 1, "page")
    per_page = min(_small_int(q.get("per_page"), PER_PAGE, "per_page"), MAX_PER_PAGE)
    return page, per_page


def _small_int(raw: str | None, default: int, name: str) -> int:
    if not raw:
        return default
    value = parse_int(raw, name)
    if not 1 <= value <= 1_000_000:
        raise InvalidParameters([f"{name} is invalid"])
    return value


def _pager(request: web.Request, total: int, page: int, per_page: int) -> Pager:
    return Pager(request.path, dict(request.query), page, per_page, total)


def path_id(request: web.Request, name: str) -> int:
    # An id past int64 names nothing: the API's 404.
    return parse_int(request.match_info[name], name, out_of_range=RecordNotFound())


async def packages_access(request: web.Request, *, destroy: bool = False,
                          who: auth.Principal | None = None) -> policy.ProjectAccess:
    """The project as the Packages API finds it for this visitor (404 for missing and
    invisible alike, 403 without the ability)."""
    settings = request.config_dict[keys.settings]
    return await policy.packages_access(
        request.config_dict[keys.db], who or session.view(request).who,
        request.match_info["id"], allow_guest_pull=settings.allow_guest_pull, destroy=destroy,
    )


async def projects(request: web.Request) -> web.Response:
    visitor = session.view(request)
    search = request.query.get("search", "").strip()[:255]
    page, per_page = _page_numbers(request)
    found = await project_service.list_projects(
        request.config_dict[keys.services], visitor.who,
        project_service.ProjectFilters(search=search or None, order_by="path", sort="asc"),
        limit=per_page, offset=(page - 1) * per_page,
    )
    return render.page(request, "projects.html", projects=found.items, search=search,
                       pager=_pager(request, found.total, page, per_page))


async def project(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.path + "/packages")


def _choice(request: web.Request, name: str, allowed: tuple[str, ...], errors: list[str]
            ) -> str:
    value = request.query.get(name, "")
    if value and value not in allowed:
        errors.append(f"{name} does not have a valid value")
        return ""
    return value


def _package_query(request: web.Request) -> tuple[listing.PackageQuery, dict[str, str]]:
    """GitLab's filters (name: substring, version: exact, status, type), order and sort."""
    errors: list[str] = []
    chosen = {
        "package_name": request.query.get("package_name", "").strip()[:255],
        "package_version": request.query.get("package_version", "").strip()[:255],
        "status": _choice(request, "status", tuple(PACKAGE_STATUS), errors),
        "package_type": _choice(request, "package_type", tuple(PACKAGE_TYPES), errors),
        "order_by": _choice(request, "order_by", ORDER_BY, errors) or "created_at",
        "sort": _choice(request, "sort", SORT, errors) or "desc",
    }
    if errors:
        raise InvalidParameters(errors)
    query = listing.PackageQuery(
        package_type=PACKAGE_TYPES[chosen["package_type"]] if chosen["package_type"] else None,
        package_name=chosen["package_name"] or None,
        package_version=chosen["package_version"] or None,
        status=PACKAGE_STATUS[chosen["status"]] if chosen["status"] else None,
        order_by=chosen["order_by"],
        sort=chosen["sort"],
    )
    return query, chosen


# As the API: a project of millions of packages is counted up to here, not to its end (the
# pager then offers the pages counted).
_COUNT_LIMIT = 10_001


async def packages(request: web.Request) -> web.Response:
    access = await packages_access(request)
    query, chosen = _package_query(request)
    page, per_page = _page_numbers(request)
    total, rows = await listing.list_packages(
        request.config_dict[keys.db], [access.project_id], query, limit=per_page,
        offset=(page - 1) * per_page, count_limit=_COUNT_LIMIT,
    )
    return render.page(
        request, "packages.html", project=access.project, packages=rows, filters=chosen,
        statuses=list(PACKAGE_STATUS), types=list(PACKAGE_TYPES), order_by=ORDER_BY,
        status_name=PACKAGE_STATUS_NAME, type_name=PACKAGE_TYPE_NAME,
        pager=_pager(request, total, page, per_page), can_delete=_can_delete(request, access),
        deleted=request.query.get("deleted") == "1",
    )


def _can_delete(request: web.Request, access: policy.ProjectAccess) -> bool:
    """Offered only when the delete would be allowed: the ability, and a token that writes."""
    return access.destroy_package and session.view(request).can_write


async def package(request: web.Request) -> web.Response:
    access = await packages_access(request)
    db = request.config_dict[keys.db]
    pkg, versions = await listing.package_details(db, access.project_id,
                                                  path_id(request, "package_id"))
    page, per_page = _page_numbers(request)
    total, files = await listing.list_package_files(
        db, access.project_id, pkg.id, order_by="id", sort="asc", limit=per_page,
        offset=(page - 1) * per_page, count_limit=_COUNT_LIMIT,
    )
    return render.page(
        request, "package.html", project=access.project, package=pkg, versions=versions,
        files=files, pager=_pager(request, total, page, per_page),
        package_status=PACKAGE_STATUS_NAME[pkg.status], type_name=PACKAGE_TYPE_NAME,
        can_delete=_can_delete(request, access), deleted=request.query.get("deleted") == "1",
    )


async def package_file(request: web.Request) -> web.Response:
    access = await packages_access(request)
    pkg, file = await listing.package_file(
        request.config_dict[keys.db], access.project_id, path_id(request, "package_id"),
        path_id(request, "file_id"),
    )
    lines = commands.for_file(external_base(request), access.project_id, pkg.name, pkg.version,
                              file.file_name)
    return render.page(
        request, "file.html", project=access.project, package=pkg, file=file,
        commands=lines, placeholder=commands.TOKEN_PLACEHOLDER,
        can_delete=_can_delete(request, access),
    )


async def download(request: web.Request) -> web.StreamResponse:
    """The file itself, as the generic package GET answers it: 302 to a presigned URL (or
    the bytes, in proxy mode), with its sha256; the package's and the file's last download
    are noted."""
    access = await packages_access(request)
    db = request.config_dict[keys.db]
    pkg, file = await listing.package_file(
        db, access.project_id, path_id(request, "package_id"), path_id(request, "file_id")
    )
    # Every UI download (a person's click) notes itself: the file's own mark, which retention
    # reads, is written at most once a day by the query itself.
    await downloads.mark_downloaded(db, pkg.id, file.id)
    store = request.config_dict[keys.store]
    disposition = content_disposition(file.file_name)
    url = await store.download_url(file.object_key, disposition,
                                   request.config_dict[keys.settings].presign_expires)
    checksum = {"X-Checksum-SHA256": file.file_sha256, "Cache-Control": "no-store"}
    if url is not None:
        raise web.HTTPFound(url, headers=checksum)
    chunks = store.read(file.object_key)
    try:
        first = await anext(chunks, b"")
    except ObjectNotFound:
        raise NotFound() from None
    response = web.StreamResponse(headers={
        **checksum, "Content-Type": "application/octet-stream",
        "Content-Disposition": disposition,
    })
    response.content_length = file.size
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response

