"""GitLab's Packages API: list, get, list files, delete (GitLab's ``lib/api/packages`` endpoints).

``GET /projects/:id/packages``, ``GET /groups/:id/packages``, ``GET /projects/:id/packages/
:package_id``, ``…/package_files``, ``DELETE …/packages/:package_id`` and ``DELETE
…/package_files/:package_file_id``. Checks run in GitLab's order: project (404 ``Project Not
Found``), ``read_package`` (403), for deletes ``destroy_package`` (403), then parameters and the
package itself (404) — so a Developer deleting a missing package gets 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway import auth, keys
from gateway.api import pagination
from gateway.api.params import as_bool, as_choice, path_int
from gateway.api.present import iso, package_status
from gateway.enums import PACKAGE_STATUS as STATUS
from gateway.enums import PACKAGE_TYPE_NAME, PACKAGE_TYPES
from gateway.errors import (
    API_HEADERS,
    Forbidden,
    InvalidParameters,
    NotFound,
    RecordNotFound,
    json_response,
)
from gateway.governance.protection import Actor
from gateway.identity import policy
from gateway.packages import deletion, listing

ORDER_BY = ("created_at", "name", "version", "type")
GROUP_ORDER_BY = (*ORDER_BY, "project_path")
FILE_ORDER_BY = ("id", "created_at", "file_name")
SORT = ("asc", "desc")
_WEB_PATH_STATUSES = ("default", "deprecated")


async def _caller(request: web.Request) -> auth.Principal:
    creds = auth.Credentials.from_request(request.headers, request.query)
    return await request.app[keys.authenticator].authenticate(creds, request.method)


async def _project(request: web.Request, who: auth.Principal, *, destroy: bool = False,
                   ) -> policy.ProjectAccess:
    access = await policy.project_access(
        request.app[keys.db], who, request.match_info["id"],
        allow_guest_pull=request.app[keys.settings].allow_guest_pull,
    )
    # The Packages API finds projects with find_project!: 404 "Project Not Found", also for
    # anonymous callers (unlike the generic routes, which answer them 401).
    if access is None or not access.read_project:
        raise NotFound("Project")
    if not access.read_package or (destroy and not access.destroy_package):
        raise Forbidden()
    return access


def _package_id(request: web.Request) -> int:
    # An id past int64 names no package: GitLab's ``404 Not found`` (``find_by!``).
    return path_int(request, "package_id", missing=RecordNotFound())


def _query(request: web.Request, order_by_values: tuple[str, ...],
           flags: tuple[str, ...] = ("include_versionless",)) -> listing.PackageQuery:
    """The list parameters with Grape's 400s, all failures reported together."""
    q = request.query
    errors: list[str] = []

    def choice(name: str, allowed: tuple[str, ...]) -> str | None:
        try:
            return as_choice(q, name, allowed)  # type: ignore[arg-type]
        except InvalidParameters as exc:
            errors.append(exc.message)
            return None

    package_type = choice("package_type", tuple(PACKAGE_TYPES))
    status = choice("status", tuple(STATUS))
    order_by = choice("order_by", order_by_values)
    sort = choice("sort", SORT)
    for flag in flags:
        try:
            as_bool(q, flag)  # type: ignore[arg-type]
        except InvalidParameters as exc:
            errors.append(exc.message)
    if errors:
        raise InvalidParameters(errors)
    return listing.PackageQuery(
        package_type=PACKAGE_TYPES[package_type] if package_type else None,
        package_name=q.get("package_name") or None,
        package_version=q.get("package_version") or None,
        status=STATUS[status] if status else None,
        order_by=order_by or "created_at",
        sort=sort or "asc",
    )


def _package(
    request: web.Request, row: Any, *, project_path: str, can_destroy: bool,
    in_group: bool = False,
) -> dict[str, Any]:
    """``API::Entities::Package`` (without ``versions``)."""
    status = package_status(row.status)
    links: dict[str, str] = {}
    if status in _WEB_PATH_STATUSES:
        links["web_path"] = f"/{project_path}/-/packages/{row.id}"
    if can_destroy:
        links["delete_api_path"] = (
            f"{pagination.external_base(request)}/api/v4/projects/{row.project_id}"
            f"/packages/{row.id}"
        )
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "package_type": PACKAGE_TYPE_NAME.get(row.package_type, "generic"),
        "status": status,
        "_links": links,
        "created_at": iso(row.created_at),
        "last_downloaded_at": iso(row.last_downloaded_at),
    }
    if in_group:
        out["project_id"] = row.project_id
        out["project_path"] = project_path
    out["tags"] = []
    return out


def _package_file(row: Any) -> dict[str, Any]:
    """``API::Entities::PackageFile``."""
    return {
        "id": row.id,
        "package_id": row.package_id,
        "created_at": iso(row.created_at),
        "file_name": row.file_name,
        "size": row.size,
        "file_md5": row.file_md5,
        "file_sha1": row.file_sha1,
        "file_sha256": row.file_sha256,
    }


def _keyset(request: web.Request) -> bool:
    """``pagination=keyset`` with ``order_by=id``: keyset pages, an extension here (GitLab's
    package lists are offset-paginated only and refuse ``order_by=id``). With any other order
    the parameter is ignored, as GitLab ignores it."""
    return pagination.wants_keyset(request) and request.query.get("order_by") == "id"


async def _paged(
    request: web.Request, type_name: str, sort: str,
    offset_rows: Callable[[pagination.Page], Awaitable[tuple[int, list[Any]]]],
    keyset_rows: Callable[[pagination.Keyset], Awaitable[list[Any]]] | None,
) -> tuple[list[Any], dict[str, str]]:
    """The rows of the page asked for and its headers: keyset pages when ``keyset_rows`` is
    given, else offset pages up to GitLab's offset limit."""
    if keyset_rows is not None:
        keyset = pagination.keyset_of(request, sort)
        rows = await keyset_rows(keyset)
        return rows[:keyset.per_page], pagination.keyset_headers(
            request, keyset, [r.id for r in rows])
    page = pagination.bounded_page_of(request, type_name)
    total, rows = await offset_rows(page)
    return rows, pagination.headers(request, page, total)


# Lists count up to one past GitLab's count limit: enough to know whether to show X-Total.
_COUNT = pagination.COUNT_LIMIT + 1


async def list_project_packages(request: web.Request) -> web.Response:
    who = await _caller(request)
    access = await _project(request, who)
    keyset = _keyset(request)
    query = _query(request, (*ORDER_BY, "id") if keyset else ORDER_BY)
    db, ids = request.app[keys.db], [access.project_id]
    rows, headers = await _paged(
        request, "Packages::Package", query.sort,
        lambda page: listing.list_packages(db, ids, query, limit=page.limit,
                                           offset=page.offset, count_limit=_COUNT),
        (lambda ks: listing.list_packages_after(db, ids, query, limit=ks.limit,
                                                after=ks.after)) if keyset else None,
    )
    path = access.project.path_with_namespace
    items = [_package(request, r, project_path=path, can_destroy=access.destroy_package)
             for r in rows]
    return json_response(items, 200, headers)


async def list_group_packages(request: web.Request) -> web.Response:
    app = request.app
    who = await _caller(request)
    group = policy.require_group_visible(
        who, await policy.group_access(app[keys.db], who, request.match_info["id"])
    )
    keyset = _keyset(request)
    query = _query(request, (*GROUP_ORDER_BY, "id") if keyset else GROUP_ORDER_BY,
                   ("include_versionless", "exclude_subgroups"))
    exclude = as_bool(request.query, "exclude_subgroups") or False  # type: ignore[arg-type]
    projects = await listing.group_projects(
        app[keys.db], group.group_id, who.user_id, exclude_subgroups=exclude
    )
    # Only projects whose packages the caller may read (registry enabled, role, visibility).
    readable = {}
    for project in projects:
        access = policy.abilities(who, project,
                                  allow_guest_pull=app[keys.settings].allow_guest_pull)
        if access.read_package:
            readable[project.id] = access
    db, ids = app[keys.db], list(readable)
    rows, headers = await _paged(
        request, "Packages::Package", query.sort,
        lambda page: listing.list_packages(db, ids, query, limit=page.limit,
                                           offset=page.offset, count_limit=_COUNT),
        (lambda ks: listing.list_packages_after(db, ids, query, limit=ks.limit,
                                                after=ks.after)) if keyset else None,
    )
    items = [
        _package(
            request, r, project_path=r.project_full_path,
            can_destroy=readable[r.project_id].destroy_package, in_group=True,
        )
        for r in rows
    ]
    return json_response(items, 200, headers)


async def get_package(request: web.Request) -> web.Response:
    who = await _caller(request)
    access = await _project(request, who)
    package_id = _package_id(request)
    row, versions = await listing.package_details(
        request.app[keys.db], access.project_id, package_id
    )
    body = _package(request, row, project_path=access.project.path_with_namespace,
                    can_destroy=access.destroy_package)
    body["versions"] = [
        {"id": v.id, "version": v.version, "created_at": iso(v.created_at), "tags": []}
        for v in versions
    ]
    return json_response(body)


async def list_package_files(request: web.Request) -> web.Response:
    who = await _caller(request)
    access = await _project(request, who)
    package_id = _package_id(request)
    errors: list[str] = []
    order = sort = None
    try:
        order = as_choice(request.query, "order_by", FILE_ORDER_BY)  # type: ignore[arg-type]
    except InvalidParameters as exc:
        errors.append(exc.message)
    try:
        sort = as_choice(request.query, "sort", SORT)  # type: ignore[arg-type]
    except InvalidParameters as exc:
        errors.append(exc.message)
    if errors:
        raise InvalidParameters(errors)
    db, project_id = request.app[keys.db], access.project_id
    # Files are ordered by id unless asked otherwise, so keyset pages need no order_by here.
    keyset = pagination.wants_keyset(request) and (order or "id") == "id"
    rows, headers = await _paged(
        request, "Packages::PackageFile", sort or "asc",
        lambda page: listing.list_package_files(
            db, project_id, package_id, order_by=order or "id", sort=sort or "asc",
            limit=page.limit, offset=page.offset, count_limit=_COUNT),
        (lambda ks: listing.list_package_files_after(
            db, project_id, package_id, sort=ks.sort, limit=ks.limit,
            after=ks.after)) if keyset else None,
    )
    return json_response([_package_file(r) for r in rows], 200, headers)


def deleted(request: web.Request) -> web.Response:
    """204 after a delete committed; the objects leave the bucket now, not at the next poll."""
    request.app[keys.deletions].wake()
    return web.Response(status=204, headers=API_HEADERS)


async def delete_package(request: web.Request) -> web.Response:
    who = await _caller(request)
    access = await _project(request, who, destroy=True)
    package_id = _package_id(request)
    await deletion.delete_package(request.app[keys.db], Actor.of(who, access), access.project_id,
                                  package_id)
    return deleted(request)


async def delete_package_file(request: web.Request) -> web.Response:
    who = await _caller(request)
    access = await _project(request, who, destroy=True)
    package_id = _package_id(request)
    file_id = path_int(request, "package_file_id", missing=RecordNotFound())
    await deletion.delete_package_file(
        request.app[keys.db], Actor.of(who, access), access.project_id, package_id, file_id
    )
    return deleted(request)
