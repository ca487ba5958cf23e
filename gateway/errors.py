"""Error kinds a client may see, and the one middleware that renders them as GitLab does.

Nothing else in the gateway builds an error body. GitLab's bodies come in three shapes:
``{"message": "..."}`` from its helpers, ``{"error": "..."}`` from Grape (validation, routing) and
the OAuth form ``{"error": code, "error_description": ...}`` for token failures.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("gateway.errors")

API_HEADERS = {"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff"}
BASIC_CHALLENGE = 'Basic realm="GitLab Packages Registry"'


class GatewayError(Exception):
    """Anything a client may see. Subclasses fix the status; the message is GitLab's text."""

    status = 500
    key = "message"
    # True when the connection cannot be trusted after this answer (broken framing).
    close_connection = False

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message if message is not None else self.default_message()
        self.headers = headers or {}
        super().__init__(self.message)

    def default_message(self) -> str:
        return "500 Internal Server Error"

    def body(self) -> dict[str, Any]:
        return {self.key: self.message}


class BadRequest(GatewayError):
    status = 400

    def __init__(self, detail: str | None = None):
        super().__init__("400 Bad request" + (f" - {detail}" if detail else ""))


class InvalidParameters(GatewayError):
    """Grape's validation errors: ``{"error": "a is invalid, b is invalid"}``."""

    status = 400
    key = "error"

    def __init__(self, messages: list[str]):
        super().__init__(", ".join(messages))


class ApiError(GatewayError):
    """GitLab's ``render_api_error!(text, status)``: any status, the text as given."""

    def __init__(self, message: str, status: int):
        self.status = status
        super().__init__(message)


class ValidationFailed(GatewayError):
    """A model that failed validation: ``{"message": {"<field>": ["<text>", …]}}`` (400)."""

    status = 400

    def __init__(self, fields: dict[str, list[str]]):
        super().__init__("validation failed")
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return {"message": self.fields}


class Unauthorized(GatewayError):
    status = 401

    def __init__(self, detail: str | None = None, *, challenge: str | None = BASIC_CHALLENGE):
        # The Packages realm is added only by the package APIs; other routes send no challenge.
        super().__init__(
            "401 Unauthorized" + (f" - {detail}" if detail else ""),
            headers={"WWW-Authenticate": challenge} if challenge else None,
        )


class InvalidToken(GatewayError):
    """An expired or revoked token (OAuth-style body)."""

    status = 401
    EXPIRED = "Token is expired. You can either do re-authorization or token refresh."
    REVOKED = "Token was revoked. You have to re-authorize from the user."

    def __init__(self, description: str):
        self.description = description
        super().__init__(
            description,
            headers={
                "WWW-Authenticate": 'Bearer realm="Protected by OAuth 2.0", error="invalid_token", '
                f'error_description="{description}"'
            },
        )

    def body(self) -> dict[str, Any]:
        return {"error": "invalid_token", "error_description": self.description}


class InsufficientScope(GatewayError):
    status = 403

    def __init__(self, scope: str = "api read_api"):
        self.scope = scope
        super().__init__("insufficient_scope")

    def body(self) -> dict[str, Any]:
        return {
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the "
            "access token.",
            "scope": self.scope,
        }


class Forbidden(GatewayError):
    status = 403

    def __init__(self, detail: str | None = None):
        super().__init__("403 Forbidden" + (f" - {detail}" if detail else ""))


class NotFound(GatewayError):
    """``404 Not Found``, or ``404 <Resource> Not Found`` when a resource is named."""

    status = 404

    def __init__(self, resource: str | None = None):
        super().__init__(f"404 {resource} Not Found" if resource else "404 Not Found")


class RecordNotFound(GatewayError):
    """ActiveRecord::RecordNotFound as GitLab renders it (lower-case "found")."""

    status = 404

    def __init__(self) -> None:
        super().__init__("404 Not found")


class NoRoute(GatewayError):
    status = 404
    key = "error"

    def __init__(self) -> None:
        super().__init__("404 Not Found")


class MethodNotAllowed(GatewayError):
    status = 405
    key = "error"

    def __init__(self, allowed: set[str] | None = None):
        headers = {"Allow": ", ".join(sorted(allowed))} if allowed else None
        super().__init__("405 Not Allowed", headers=headers)


class PaginationNotAvailable(GatewayError):
    """GitLab's ``error!(text, 405)`` of its pagination strategies: keyset pages asked for in an
    order they do not support, or an offset past the offset pagination limit."""

    status = 405
    key = "error"


class Conflict(GatewayError):
    status = 409

    def __init__(self, message: str = "409 Conflict"):
        super().__init__(message)


class PreconditionFailed(GatewayError):
    """A conditional request (``If-Match``, ``If-None-Match``) whose condition is false."""

    status = 412

    def __init__(self) -> None:
        super().__init__("412 Precondition Failed")


class RangeNotSatisfiable(GatewayError):
    """A ``Range`` that starts past the end of the file (RFC 9110 §15.5.17)."""

    status = 416

    def __init__(self, size: int) -> None:
        super().__init__("416 Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})


class PayloadTooLarge(GatewayError):
    status = 413

    def __init__(self) -> None:
        super().__init__("413 Request Entity Too Large")


class UnprocessableEntity(GatewayError):
    status = 422

    def __init__(self, message: str = "422 Unprocessable Entity"):
        super().__init__(message)


class ServiceUnavailable(GatewayError):
    """PostgreSQL or S3 cannot be reached, or the process is full; retrying later will work."""

    status = 503

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None):
        super().__init__(
            "503 Service Unavailable" + (f" - {detail}" if detail else ""),
            headers={"Retry-After": str(retry_after)} if retry_after else None,
        )


class RequestTimeout(GatewayError):
    status = 408

    def __init__(self) -> None:
        super().__init__("408 Request Timeout - the request body stopped arriving")


class BrokenBody(BadRequest):
    """The body does not match its framing (broken chunked encoding, bytes beyond
    ``Content-Length``); the upload is aborted and the connection closed."""

    close_connection = True

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class ClientGone(Exception):
    """The client hung up mid-request; nobody is left to answer (logged as 499)."""


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Compact JSON as GitLab sends it, with its API headers."""
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={**API_HEADERS, **(headers or {})},
    )


def render(err: GatewayError) -> web.Response:
    response = json_response(err.body(), err.status, err.headers)
    if err.close_connection:
        response.force_close()
    return response


@web.middleware
async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map every failure to GitLab's JSON; never let a traceback reach the client."""
    return _close_if_body_unread(request, await _answer(request, handler))


async def _answer(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as err:
        _log_cause(request, err.status, err)
        return render(err)
    except web.HTTPNotFound:
        return render(NoRoute())
    except web.HTTPMethodNotAllowed as exc:
        return render(MethodNotAllowed(set(exc.allowed_methods)))
    except web.HTTPRequestEntityTooLarge:
        return render(PayloadTooLarge())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        _log_cause(request, exc.status, exc)
        return json_response({"message": f"{exc.status} {exc.reason}"}, exc.status)
    except (ClientGone, ConnectionResetError):
        # The peer is gone; there is nobody to answer. The HTTP edge logs it as 499.
        raise
    except asyncio.CancelledError:
        # Shutdown past its deadline (or aiohttp after a disconnect); re-raised for aiohttp.
        log.info("request cancelled", extra={"path": request.path})
        raise
    except Exception:
        log.exception("unexpected error", extra={"path": request.path})
        return render(GatewayError())


def _log_cause(request: web.Request, status: int, exc: BaseException) -> None:
    """A 5xx's cause, beside the access line that shows only the status (no secrets: the
    handler's filter redacts, and exceptions here carry no request headers)."""
    if status >= 500:
        log.warning("answered %d: %s", status, cause_chain(exc), extra={"path": request.path})


def cause_chain(exc: BaseException, *, limit: int = 6) -> str:
    """``exc`` and what raised it, outermost first: ``"BufferBusy: 503 … <- TimeoutError"``."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < limit:
        seen.add(id(current))
        text = str(current)
        parts.append(f"{type(current).__name__}: {text}" if text else type(current).__name__)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__)
    return " <- ".join(parts)


def _close_if_body_unread(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """An answer given before the body was read (refused upload, outage) closes the connection
    (``Connection: close``), so a client without ``Expect: 100-continue`` stops sending its
    gigabytes; aiohttp discards what still arrives for ``lingering_time`` (see app.py)."""
    if request.body_exists and not request.content.is_eof():
        response.force_close()
    return response
