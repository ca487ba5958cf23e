"""Resumable uploads: tus 1.0 and the IETF resumable upload protocol, on one session engine.

Creation (the target is the generic file, checked as a PUT checks it):

- tus: ``POST /api/v4/projects/:id/packages/generic/:name/:version/:file_name/uploads``
- IETF: ``POST`` (or ``PUT``) to ``…/packages/generic/:name/:version/:file_name`` with an
  ``Upload-Complete`` header: an ordinary upload made resumable.

The session: ``/api/v4/projects/:id/packages/uploads/:session_id`` (``HEAD`` offset, ``PATCH``
append, ``DELETE`` cancel), spoken in either protocol (``Tus-Resumable`` tells them apart).
Every request needs the same credentials and role as a PUT to the project.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import re

from aiohttp import web

from gateway import auth, keys, naming
from gateway.api import generic_packages
from gateway.api.generic_packages import (
    RequestBody,
    authenticate,
    generic_tail,
    project_access,
)
from gateway.api.present import package_file_record
from gateway.errors import (
    API_HEADERS,
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    json_response,
)
from gateway.governance import gate, quotas
from gateway.governance.protection import Actor
from gateway.identity import policy
from gateway.packages import duplicates
from gateway.resumable import engine

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
TUS_CHECKSUMS = {"sha1": 20, "md5": 16}
TUS_CONTENT_TYPE = "application/offset+octet-stream"
# The newest draft (draft-ietf-httpbis-resumable-upload-10) speaks interop version 8.
IETF_INTEROP = "8"
IETF_CONTENT_TYPE = "application/partial-upload"
_DIGITS = re.compile(r"[0-9]{1,19}")
_UPLOADS_SUFFIX = "/uploads"


class UnsupportedTusVersion(GatewayError):
    status = 412

    def __init__(self) -> None:
        super().__init__("412 Precondition Failed - unsupported Tus-Resumable version",
                         headers={"Tus-Version": TUS_VERSION})


class UnsupportedMediaType(GatewayError):
    status = 415

    def __init__(self, wanted: str) -> None:
        super().__init__(f"415 Unsupported Media Type - send {wanted}")


def _header_int(request: web.Request, name: str) -> int | None:
    """A non-negative integer header (ASCII digits, within int64), or None when absent."""
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not _DIGITS.fullmatch(value) or int(value) > 2**63 - 1:
        raise BadRequest(f"{name} is invalid")
    return int(value)


def _structured_bool(request: web.Request, name: str) -> bool | None:
    value = request.headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if value not in ("?0", "?1"):
        raise BadRequest(f"{name} must be ?0 or ?1")
    return value == "?1"


def _content_length(request: web.Request) -> int | None:
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        return None
    return request.content_length or 0


def _tus(request: web.Request) -> bool:
    version = request.headers.get("Tus-Resumable")
    if version is None:
        return False
    if version.strip() != TUS_VERSION:
        raise UnsupportedTusVersion()
    return True


def _tus_metadata(request: web.Request) -> dict[str, str]:
    """``Upload-Metadata: key base64,key2 base64`` (a key may have no value)."""
    metadata: dict[str, str] = {}
    raw = request.headers.get("Upload-Metadata", "").strip()
    for item in filter(None, (p.strip() for p in raw.split(","))):
        key, _, value = item.partition(" ")
        try:
            metadata[key] = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest("Upload-Metadata is invalid") from None
    if len(metadata) > 32 or sum(len(k) + len(v) for k, v in metadata.items()) > 4096:
        raise BadRequest("Upload-Metadata is too large")
    return metadata


def _tus_checksum(request: web.Request) -> engine.Checksum | None:
    raw = request.headers.get("Upload-Checksum")
    if raw is None:
        return None
    algorithm, _, value = raw.strip().partition(" ")
    if algorithm not in TUS_CHECKSUMS:
        raise BadRequest("Upload-Checksum: unsupported algorithm")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise BadRequest("Upload-Checksum is invalid") from None
    if len(digest) != TUS_CHECKSUMS[algorithm]:
        raise BadRequest("Upload-Checksum is invalid")
    return engine.Checksum(algorithm, digest)


def _session_path(project_id: int, session_id: str) -> str:
    return f"/api/v4/projects/{project_id}/packages/uploads/{session_id}"


def _expires(session: engine.Session) -> str:
    return email.utils.format_datetime(session.expires_at, usegmt=True)


def _tus_headers(session: engine.Session | None = None) -> dict[str, str]:
    headers = {**API_HEADERS, "Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if session is not None:
        headers["Upload-Offset"] = str(session.offset)
        headers["Upload-Expires"] = _expires(session)
        if session.length is not None:
            headers["Upload-Length"] = str(session.length)
    return headers


def _ietf_headers(request: web.Request, session: engine.Session) -> dict[str, str]:
    headers = {**API_HEADERS, "Cache-Control": "no-store",
               "Upload-Offset": str(session.offset),
               "Upload-Complete": "?1" if session.committed else "?0",
               "Upload-Limit": _upload_limit(request, session)}
    if session.length is not None:
        headers["Upload-Length"] = str(session.length)
    if "Upload-Draft-Interop-Version" in request.headers:
        headers["Upload-Draft-Interop-Version"] = IETF_INTEROP
    return headers


def _upload_limit(request: web.Request, session: engine.Session | None) -> str:
    limits = ["min-append-size=1"]
    max_size = request.app[keys.settings].max_file_size
    if max_size > 0:
        limits.append(f"max-size={max_size - 1}")
    if session is not None:
        left = session.expires_at - dt.datetime.now(session.expires_at.tzinfo)
        seconds = max(0, int(left.total_seconds()))
        limits.append(f"max-age={seconds}")
    return ", ".join(limits)


async def _writer(request: web.Request) -> tuple[auth.Principal, policy.ProjectAccess]:
    """The caller may write packages of the project in the URL (a PUT's checks)."""
    who = await authenticate(request, "PUT")
    if who.anonymous:
        raise auth.Unauthorized()
    return who, policy.require_create_package(who, await project_access(request, who))


def _governance(request: web.Request, who: auth.Principal, access: policy.ProjectAccess
                ) -> tuple[Actor, quotas.Defaults, gate.CommitChecks]:
    """What a PUT passes (protection rules, quotas, the audit event), for this caller."""
    settings = request.app[keys.settings]
    actor = Actor.of(who, access)
    defaults = quotas.Defaults(settings.packages_quota_bytes, settings.packages_quota_files)
    return actor, defaults, gate.CommitChecks(actor, defaults,
                                              request.app.get(keys.quota_stats))


async def _before_body(request: web.Request, who: auth.Principal,
                       access: policy.ProjectAccess, target: naming.FileTarget,
                       length: int | None) -> gate.CommitChecks:
    """A session is refused at its creation as a PUT would be: a protected name, or a
    declared length that no quota above the project can take."""
    actor, defaults, checks = _governance(request, who, access)
    await gate.before_body(request.app[keys.db], actor, access.project_id, target, length,
                           defaults, request.app.get(keys.quota_stats))
    return checks


def _lifetime(request: web.Request) -> float:
    return float(request.app[keys.settings].resumable_upload_seconds)


# --- tus ------------------------------------------------------------------------------------


async def tus_options(request: web.Request) -> web.Response:
    """tus discovery, for a project the caller can see (as a GET would be answered)."""
    who = await authenticate(request, "GET")
    policy.require_visible(who, await project_access(request, who))
    headers = {**API_HEADERS, "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION,
               "Tus-Extension": TUS_EXTENSIONS, "Tus-Checksum-Algorithm": "sha1,md5"}
    max_size = request.app[keys.settings].max_file_size
    if max_size > 0:
        headers["Tus-Max-Size"] = str(max_size - 1)
    return web.Response(status=204, headers=headers)


async def create_upload(request: web.Request) -> web.StreamResponse:
    """``POST …/:file_name/uploads`` (tus, or IETF) or ``POST …/:file_name`` (IETF)."""
    tail = generic_tail(request)
    # …/:name/:version/:file_name/uploads (a file named "uploads" is …/:version/uploads).
    on_uploads = tail.endswith(_UPLOADS_SUFFIX) and tail.count("/") >= 3
    if _tus(request):
        if not on_uploads:
            raise BadRequest("tus uploads are created at …/:file_name/uploads")
        return await _tus_create(request, tail[: -len(_UPLOADS_SUFFIX)])
    if "Upload-Complete" not in request.headers:
        # Not a resumable upload: a POST to a file is no GitLab route (the caller and the
        # project are checked first, as for every request to a project's packages).
        await _writer(request)
        raise MethodNotAllowed({"GET", "HEAD", "PUT", "DELETE"})
    if on_uploads:
        tail = tail[: -len(_UPLOADS_SUFFIX)]
    return await ietf_create(request, tail)


async def _tus_create(request: web.Request, tail: str) -> web.Response:
    app = request.app
    metadata = _tus_metadata(request)
    status = metadata.get("status")
    who = await authenticate(request, "PUT")
    if who.anonymous:
        raise auth.Unauthorized()
    target = naming.file_target(tail, status)
    access = policy.require_create_package(who, await project_access(request, who))
    naming.check_late_parameters(target, None)
    length = _header_int(request, "Upload-Length")
    if length is None:
        raise BadRequest("Upload-Length is required")
    content_length = _content_length(request)
    with_body = request.body_exists and content_length != 0
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
    if with_body and content_type != TUS_CONTENT_TYPE:
        raise UnsupportedMediaType(TUS_CONTENT_TYPE)
    checksum = _tus_checksum(request)
    checks = await _before_body(request, who, access, target, length)
    await duplicates.check_duplicate(app[keys.db], access.project_id, target)
    session = await engine.create(
        app[keys.uploads], access.project_id, target, status=status, creator_id=who.user_id,
        length=length, metadata=metadata, lifetime_seconds=_lifetime(request))
    location = _session_path(access.project_id, session.id)
    if with_body or length == 0:
        # creation-with-upload: the body is the first append (an empty file ends here).
        await generic_packages.send_continue(request)
        async with RequestBody(request) as body:
            done = await engine.append(
                app[keys.uploads], session.id, access.project_id, body, offset=0,
                content_length=content_length, checksum=checksum,
                lifetime_seconds=_lifetime(request), checks=checks)
        session = done.session
    return web.Response(status=201, headers={**_tus_headers(session), "Location": location})


async def session_head(request: web.Request) -> web.Response:
    _, access = await _writer(request)
    session = await engine.locate(request.app[keys.uploads], request.match_info["session_id"],
                                  access.project_id)
    if _tus(request):
        return web.Response(status=200, headers=_tus_headers(session))
    return web.Response(status=204, headers=_ietf_headers(request, session))


async def session_patch(request: web.Request) -> web.Response:
    tus = _tus(request)
    who, access = await _writer(request)
    wanted = TUS_CONTENT_TYPE if tus else IETF_CONTENT_TYPE
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
    if content_type != wanted and (tus or content_type):
        raise UnsupportedMediaType(wanted)
    offset = _header_int(request, "Upload-Offset")
    if offset is None:
        raise BadRequest("Upload-Offset is required")
    complete = None if tus else _structured_bool(request, "Upload-Complete")
    if not tus and complete is None:
        raise BadRequest("Upload-Complete is required")
    async with RequestBody(request) as body:
        done = await engine.append(
            request.app[keys.uploads], request.match_info["session_id"], access.project_id,
            body, offset=offset, content_length=_content_length(request), complete=complete,
            length=_header_int(request, "Upload-Length"),
            checksum=_tus_checksum(request) if tus else None,
            lifetime_seconds=_lifetime(request),
            # Expect: 100-continue is answered once the session is held at the right offset.
            on_ready=lambda: generic_packages.send_continue(request),
            checks=_governance(request, who, access)[2])
    if tus:
        return web.Response(status=204, headers=_tus_headers(done.session))
    return _ietf_answer(request, done)


async def session_delete(request: web.Request) -> web.Response:
    tus = _tus(request)
    _, access = await _writer(request)
    await engine.terminate(request.app[keys.uploads], request.match_info["session_id"],
                           access.project_id)
    return web.Response(status=204, headers=_tus_headers() if tus else dict(API_HEADERS))


# --- IETF resumable upload -------------------------------------------------------------------


async def put_or_create(request: web.Request) -> web.StreamResponse:
    """A PUT to a file is a plain upload, or with ``Upload-Complete`` a resumable one."""
    if "Upload-Complete" in request.headers:
        return await ietf_create(request)
    return await generic_packages.put_file(request)


async def ietf_create(request: web.Request, tail: str | None = None) -> web.StreamResponse:
    """An upload to the file's URL that carries ``Upload-Complete``: checked as a PUT, then
    made a session; ``104 Upload Resumption Supported`` tells the client where it is before
    the body is read (when the client says it speaks the draft)."""
    app = request.app
    complete = _structured_bool(request, "Upload-Complete")
    status = request.query.get("status")
    select = request.query.get("select")
    who = await authenticate(request, "PUT")
    if who.anonymous:
        raise auth.Unauthorized()
    target = naming.file_target(tail if tail is not None else generic_tail(request), status)
    access = policy.require_create_package(who, await project_access(request, who))
    naming.check_late_parameters(target, select)
    content_length = _content_length(request)
    length = _header_int(request, "Upload-Length")
    if complete and content_length is not None:
        length = content_length if length is None else length
    checks = await _before_body(request, who, access, target, length)
    await duplicates.check_duplicate(app[keys.db], access.project_id, target)
    session = await engine.create(
        app[keys.uploads], access.project_id, target, status=status, creator_id=who.user_id,
        length=length, metadata={"select": select} if select else {},
        lifetime_seconds=_lifetime(request))
    location = _session_path(access.project_id, session.id)
    has_body = content_length is None or content_length > 0
    if (has_body and "Upload-Draft-Interop-Version" in request.headers
            and request.version >= (1, 1)):
        await request.writer.write(
            b"HTTP/1.1 104 Upload Resumption Supported\r\n"
            b"Upload-Draft-Interop-Version: " + IETF_INTEROP.encode() + b"\r\n"
            b"Location: " + location.encode() + b"\r\n\r\n")
        request.writer.output_size = 0
    else:
        await generic_packages.send_continue(request)
    async with RequestBody(request) as body:
        done = await engine.append(
            app[keys.uploads], session.id, access.project_id, body, offset=0,
            content_length=content_length, complete=complete, length=length,
            lifetime_seconds=_lifetime(request), checks=checks)
    response = _ietf_answer(request, done)
    response.headers["Location"] = location
    return response


def _ietf_answer(request: web.Request, done: engine.Appended) -> web.Response:
    """The last append answers as the PUT would have (``select`` from the creation)."""
    headers = _ietf_headers(request, done.session)
    if done.file is None:
        return web.Response(status=201 if request.method != "PATCH" else 204, headers=headers)
    headers.pop("Cache-Control", None)
    if done.session.metadata.get("select") == "package_file":
        return json_response(package_file_record(done.file), 200, headers)
    return json_response({"message": "201 Created"}, 201, headers)
