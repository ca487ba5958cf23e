"""The Packages API's reads: package lists of projects and groups, one package and its
versions, a package's files."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.db import packages as q
from gateway.db.identity import groups as group_queries
from gateway.db.pool import Database
from gateway.errors import GatewayError, RecordNotFound
from gateway.models import Package, PackageFile, PackageVersion, Project


class PackageNotFound(GatewayError):
    """A single GET of a package in ``error`` status: GitLab's bare ``Package not found``."""

    status = 404

    def __init__(self) -> None:
        super().__init__("Package not found")


@dataclass(frozen=True, slots=True)
class PackageQuery:
    """The filters and order of a package list, already validated."""

    package_type: int | None = None
    package_name: str | None = None
    package_version: str | None = None
    status: int | None = None  # None: every displayable status
    order_by: str = "created_at"
    sort: str = "asc"


def _statuses(query: PackageQuery) -> tuple[int, ...]:
    return (query.status,) if query.status is not None else q.DISPLAYABLE_STATUSES


async def list_packages(
    db: Database, project_ids: list[int], query: PackageQuery, *, limit: int, offset: int,
    count_limit: int,
) -> tuple[int, list[Package]]:
    """One page of the packages of these projects, and how many match (counted up to
    ``count_limit``)."""
    async with db.connection() as conn:
        return await q.list_packages(
            conn, project_ids, package_type=query.package_type, name=query.package_name,
            statuses=_statuses(query), version=query.package_version, order_by=query.order_by,
            sort=query.sort, limit=limit, offset=offset, count_limit=count_limit,
        )


async def list_packages_after(
    db: Database, project_ids: list[int], query: PackageQuery, *, limit: int, after: int | None,
) -> list[Package]:
    """A keyset page in id order (``query.sort``), after the package ``after``."""
    async with db.connection() as conn:
        return await q.list_packages_after(
            conn, project_ids, package_type=query.package_type, name=query.package_name,
            statuses=_statuses(query), version=query.package_version, sort=query.sort,
            limit=limit, after=after,
        )


async def group_projects(
    db: Database, group_id: int, user_id: int | None, *, exclude_subgroups: bool
) -> list[Project]:
    """The projects of a group (and of its subgroups), with the caller's access level."""
    async with db.connection() as conn:
        ids = [group_id] if exclude_subgroups else await group_queries.group_and_descendant_ids(
            conn, group_id
        )
        return await q.group_projects_for_caller(conn, ids, user_id)


async def displayable_package(db: Database, project_id: int, package_id: int) -> Package:
    """The package as the Packages API finds it by id (hidden ones are not found)."""
    async with db.connection() as conn:
        pkg = await q.find_package(conn, project_id, package_id)
    if pkg is None or pkg.status not in q.DISPLAYABLE_STATUSES:
        raise RecordNotFound()
    return pkg


async def package_details(
    db: Database, project_id: int, package_id: int
) -> tuple[Package, list[PackageVersion]]:
    """A package for a single GET, and its other versions; GitLab's two 404s otherwise."""
    pkg = await displayable_package(db, project_id, package_id)
    if pkg.status not in q.DETAILED_STATUSES:
        raise PackageNotFound()
    async with db.connection() as conn:
        return pkg, await q.other_versions(conn, pkg)


async def list_package_files(
    db: Database, project_id: int, package_id: int, *, order_by: str, sort: str,
    limit: int, offset: int, count_limit: int,
) -> tuple[int, list[PackageFile]]:
    await displayable_package(db, project_id, package_id)
    async with db.connection() as conn:
        return await q.list_package_files(
            conn, package_id, order_by=order_by, sort=sort, limit=limit, offset=offset,
            count_limit=count_limit,
        )


async def list_package_files_after(
    db: Database, project_id: int, package_id: int, *, sort: str, limit: int,
    after: int | None,
) -> list[PackageFile]:
    """A keyset page of the package's files in id order, after the file ``after``."""
    await displayable_package(db, project_id, package_id)
    async with db.connection() as conn:
        return await q.list_package_files_after(
            conn, package_id, sort=sort, limit=limit, after=after
        )


async def package_file(
    db: Database, project_id: int, package_id: int, file_id: int
) -> tuple[Package, PackageFile]:
    """One file of a package the Packages API shows (``404 Not found`` otherwise)."""
    pkg = await displayable_package(db, project_id, package_id)
    async with db.connection() as conn:
        row = await q.find_package_file(conn, package_id, file_id)
    if row is None:
        raise RecordNotFound()
    return pkg, row
