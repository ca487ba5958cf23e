"""How records look in GitLab's JSON: shared by every API module."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

from gateway.enums import PACKAGE_FILE_STATUS_NAME, PACKAGE_STATUS_NAME


def iso(ts: datetime | None) -> str | None:
    """GitLab's timestamps: ISO 8601 in UTC with milliseconds, ``2021-10-12T12:05:23.387Z``."""
    if ts is None:
        return None
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def iso_date(d: date | None) -> str | None:
    return d.isoformat() if d is not None else None


def package_file_record(row: Any) -> dict[str, Any]:
    """The package-file model as ``?select=package_file`` returns it: every column, in order."""
    h = hashlib.sha256(str(row.project_id).encode()).hexdigest()
    return {
        "id": row.id,
        "package_id": row.package_id,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "size": row.size,
        "file_store": row.file_store,
        "file_md5": row.file_md5,
        "file_sha1": row.file_sha1,
        "file_name": row.file_name,
        "file": {
            "url": f"/{h[:2]}/{h[2:4]}/{h}/packages/{row.package_id}/files/{row.id}/"
            f"{row.file_name}"
        },
        "file_sha256": row.file_sha256,
        "verification_retry_at": None,
        "verified_at": None,
        "verification_failure": None,
        "verification_retry_count": None,
        "verification_checksum": None,
        "verification_state": 0,
        "verification_started_at": None,
        "status": PACKAGE_FILE_STATUS_NAME[row.status],
        "file_final_path": None,
        "project_id": row.project_id,
        "new_file_path": None,
    }


def package_status(code: int) -> str:
    return PACKAGE_STATUS_NAME[code]
