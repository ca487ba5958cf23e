"""Who is browsing: the session cookie, the principal behind it, and CSRF tokens.

The session cookie holds a random id only (``gateway.identity.sessions`` keeps its digest and
the token it stands for). It is ``__Host-`` prefixed (so Secure, Path=/, no Domain: no other
host or path can set or shadow it), HttpOnly (no script reads it) and SameSite=Lax (other
sites' forms and fetches do not carry it; a link from elsewhere still opens the page signed in,
as GitLab's own cookie does). Browsers keep Secure cookies over plain HTTP only for
localhost, so outside ``gateway dev`` the UI wants HTTPS (which nginx or the balancer gives).

Every form carries a CSRF token: for a session, a digest of its id (a page from another site
can neither read the cookie nor the page that shows the token); before sign-in, a digest of a
random ``__Host-`` cookie set with the sign-in form (double submit), so nobody can sign a
browser into their own account either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway import auth, keys
from gateway.errors import Forbidden, GatewayError, InvalidToken
from gateway.identity import sessions

SESSION_COOKIE = "__Host-packgate-session"
SIGNIN_COOKIE = "__Host-packgate-signin"
_COOKIE_FLAGS: dict[str, Any] = {"path": "/", "secure": True, "httponly": True,
                                 "samesite": "Lax"}
SIGN_IN = "/-/ui/sign_in"


@dataclass(frozen=True, slots=True)
class Visitor:
    who: auth.Principal
    session_id: str | None = None
    csrf: str | None = None
    # Why this session may not change anything (a read_api token), if it may not.
    write_refused: GatewayError | None = None

    @property
    def signed_in(self) -> bool:
        return self.session_id is not None

    @property
    def can_write(self) -> bool:
        return self.signed_in and self.write_refused is None


visitor_key = web.RequestKey("ui_visitor", Visitor)


class CsrfRefused(Forbidden):
    def __init__(self) -> None:
        super().__init__("This form did not come from this site, or it has expired: go back, "
                         "reload the page and try again.")


def _csrf_for(secret: str) -> str:
    return hashlib.sha256(b"packgate-ui-csrf:" + secret.encode()).hexdigest()


def view(request: web.Request) -> Visitor:
    return request.get(visitor_key) or Visitor(auth.ANONYMOUS)


def set_session(response: web.StreamResponse, session_id: str) -> None:
    response.set_cookie(SESSION_COOKIE, session_id, **_COOKIE_FLAGS)
    response.del_cookie(SIGNIN_COOKIE, **_COOKIE_FLAGS)


def clear_session(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, **_COOKIE_FLAGS)


def sign_in_csrf(request: web.Request, response: web.StreamResponse | None = None) -> str:
    """The sign-in form's CSRF token; sets the cookie it is checked against when missing."""
    secret = request.cookies.get(SIGNIN_COOKIE, "")
    if not 20 <= len(secret) <= 100:
        secret = secrets.token_urlsafe(32)
        request[_new_signin_secret] = secret
    return _csrf_for(secret)


_new_signin_secret = web.RequestKey("ui_signin_secret", str)


def check_csrf(request: web.Request, form: Any, *, before_sign_in: bool = False) -> None:
    """A forged or stale form is refused before anything else is looked at."""
    sent = form.get("csrf_token", "")
    if before_sign_in:
        secret = request.cookies.get(SIGNIN_COOKIE, "")
        expected = _csrf_for(secret) if 20 <= len(secret) <= 100 else None
    else:
        expected = view(request).csrf
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(
            sent.encode(), expected.encode()):
        raise CsrfRefused()


def writer(request: web.Request) -> auth.Principal:
    """The signed-in caller, for a change: refused for read_api tokens, as the API does."""
    visitor = view(request)
    if not visitor.signed_in:
        raise web.HTTPSeeOther(SIGN_IN)
    if visitor.write_refused is not None:
        raise visitor.write_refused
    return visitor.who


async def _resolve(request: web.Request, session_id: str) -> Visitor | None:
    db = request.config_dict[keys.db]
    row = await sessions.token_of(db, session_id)
    if row is None:
        return None
    authenticator = request.config_dict[keys.authenticator]
    # Read as the API reads (GET); writes are checked as the API checks a DELETE.
    who = await authenticator.authenticate_session(row, "GET")
    refused: GatewayError | None = None
    try:
        await authenticator.authenticate_session(row, "DELETE")
    except GatewayError as err:
        refused = err
    return Visitor(who, session_id, _csrf_for(session_id), refused)


@web.middleware
async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    session_id = request.cookies.get(SESSION_COOKIE)
    stale = False
    if session_id:
        try:
            visitor = await _resolve(request, session_id)
        except (InvalidToken, Forbidden):
            # Revoked, expired, or its user blocked: the session ends here, as the token has.
            await sessions.end(request.config_dict[keys.db], session_id)
            response = web.HTTPSeeOther(SIGN_IN + "?ended=1")
            clear_session(response)
            raise response from None
        if visitor is None:
            stale = True
        else:
            request[visitor_key] = visitor
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _finish(request, exc, stale)
        raise
    _finish(request, response, stale)
    return response


def _finish(request: web.Request, response: web.StreamResponse, stale: bool) -> None:
    if stale:
        clear_session(response)
    if (secret := request.get(_new_signin_secret)) is not None:
        response.set_cookie(SIGNIN_COOKIE, secret, **_COOKIE_FLAGS)
