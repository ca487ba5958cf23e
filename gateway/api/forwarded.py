"""Who the client is, as far as we may believe it.

A request's ``Forwarded`` and ``X-Forwarded-*`` headers are anyone's to write, so they count
only when the peer is a trusted proxy (``GATEWAY_TRUSTED_PROXIES``). Then the client is found
the usual way: walk the forwarded hops from the right (the last one was added by our peer),
past every hop that is itself a trusted proxy; the first other hop is the client, with the
scheme and host it asked for. ``X-Forwarded-For``/``-Host``/``-Proto`` are read when present,
``Forwarded`` (RFC 7239) otherwise; a proxy must overwrite (or clear) what it does not set,
as deploy/nginx.conf does.

``is_trusted_proxy`` is the one answer to "may this peer speak for the client" for every
header that needs it (X-Request-Id too).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway import keys, logs
from gateway.config import IPNetwork
from gateway.logs import CLIENT_ADDRESS

# A host name or address literal with an optional port: all a link's authority may hold.
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class ClientView:
    """The client's scheme, host (as in its URL) and address."""

    scheme: str
    host: str
    address: str | None


_VIEW = web.RequestKey("client_view", ClientView)


@dataclass(frozen=True, slots=True)
class _Hop:
    address: str | None  # the client of the proxy that added this hop
    scheme: str | None
    host: str | None


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1`` or ``[2001:db8::1]:80``."""
    if not text:
        return None
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_trusted_proxy(address: str | None, trusted: Sequence[IPNetwork]) -> bool:
    """True when ``address`` (a peer's IP, as ``request.remote`` gives it) is in ``trusted``."""
    ip = _ip(address)
    if ip is None or not trusted:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trusted)


def peer_is_trusted(request: web.BaseRequest, trusted: Sequence[IPNetwork]) -> bool:
    """True when the request came straight from a trusted proxy."""
    return is_trusted_proxy(request.remote, trusted)


def _split(request: web.BaseRequest, name: str) -> list[str]:
    return [v.strip() for value in request.headers.getall(name, ()) for v in value.split(",")]


def _hops(request: web.BaseRequest) -> list[_Hop]:
    fors = _split(request, "X-Forwarded-For")
    schemes = _split(request, "X-Forwarded-Proto")
    hosts = _split(request, "X-Forwarded-Host")
    if fors or schemes or hosts:
        # Lists are appended to from the left, so they line up from the right.
        n = max(len(fors), 1)

        def at(values: list[str], i: int) -> str | None:
            j = len(values) - (n - i)
            return values[j] if 0 <= j < len(values) else None

        return [_Hop(at(fors, i), at(schemes, i), at(hosts, i)) for i in range(n)]
    return [_Hop(f.get("for"), f.get("proto"), f.get("host")) for f in request.forwarded]


def _direct(request: web.BaseRequest) -> ClientView:
    host = request.host
    if not _HOST.match(host):
        # A Host header that is no host name (it would end up inside our links).
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        host = f"{sock[0]}:{sock[1]}" if isinstance(sock, tuple) else "localhost"
    return ClientView(request.scheme, host, request.remote)


def _through_proxies(request: web.BaseRequest, trusted: Sequence[IPNetwork]) -> ClientView:
    direct = _direct(request)
    address, scheme, host = direct.address, direct.scheme, direct.host
    for hop in reversed(_hops(request)):
        if hop.scheme and hop.scheme.lower() in _SCHEMES:
            scheme = hop.scheme.lower()
        if hop.host and _HOST.match(hop.host):
            host = hop.host
        ip = _ip(hop.address)
        if ip is None:
            break  # "unknown" or an obfuscated name: the proxy we came from is all we know
        address = str(ip)
        if not is_trusted_proxy(address, trusted):
            break
    return ClientView(scheme, host, address)


def client_view(request: web.Request) -> ClientView:
    """The client's scheme, host and address: the forwarded ones when our peer is a trusted
    proxy, the connection's own otherwise."""
    view = request.get(_VIEW)
    if view is None:
        trusted = request.app[keys.settings].trusted_proxies
        if peer_is_trusted(request, trusted):
            view = _through_proxies(request, trusted)
        else:
            view = _direct(request)
        request[_VIEW] = view
    return view


def middleware(
    trusted: Sequence[IPNetwork],
) -> Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]],
              Awaitable[web.StreamResponse]] | None:
    """Records the forwarded client address for the access log; None when nobody is trusted
    (the peer is then the client, and there is nothing to do per request)."""
    if not trusted:
        return None

    @web.middleware
    async def record_client(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if not peer_is_trusted(request, trusted):
            return await handler(request)
        address = client_view(request).address
        request[CLIENT_ADDRESS] = address
        token = logs.client_address.set(address)  # what audit events record
        try:
            return await handler(request)
        finally:
            logs.client_address.reset(token)

    return record_client
