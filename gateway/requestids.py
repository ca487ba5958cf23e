"""``X-Request-Id``: one id per request, on its answer and on every log line it causes.

A trusted proxy's id is kept (nginx's ``$request_id``, a load balancer's), so one id follows a
request through every hop; from anyone else, or when it is not a plain short token, a new one
is made: a client must not be able to choose the id other requests are logged under, nor put
text of its choice into log lines. The id is on the answer (every answer that reaches a
handler, streamed ones included) and, through a context variable that the JSON formatter
reads, on every log line written while the request is handled, also by tasks it starts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway import logs

HEADER = "X-Request-Id"
# Letters, digits and a few separators; at most 128: enough for UUIDs, nginx's 32 hex digits,
# W3C trace ids and AWS's trace ids, and nothing a log line could be tricked by.
_VALID = re.compile(r"[A-Za-z0-9._:=+/@-]{1,128}")

TrustedProxy = Callable[[web.BaseRequest], bool]


def new_request_id() -> str:
    return uuid.uuid4().hex


def valid_request_id(value: str | None) -> bool:
    return value is not None and _VALID.fullmatch(value) is not None


def _peer_is_trusted_proxy(request: web.BaseRequest) -> bool:
    # The app passes api.forwarded's check of GATEWAY_TRUSTED_PROXIES; alone, trust nobody.
    return False


def middleware(is_trusted: TrustedProxy = _peer_is_trusted_proxy) -> Any:
    """The outermost middleware: picks the request's id and sets it for its log lines."""

    @web.middleware
    async def request_id(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get(HEADER)
        rid = given if valid_request_id(given) and is_trusted(request) else new_request_id()
        request[logs.REQUEST_ID] = rid
        token = logs.request_id.set(rid)
        address = logs.client_address.set(request.remote)
        try:
            return await handler(request)
        finally:
            # A keep-alive connection handles its next request in the same task.
            logs.client_address.reset(address)
            logs.request_id.reset(token)

    return request_id


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries the id, also one streamed by its handler (headers go out first)."""
    rid = request.get(logs.REQUEST_ID)
    if rid is not None:
        response.headers[HEADER] = rid
