"""What gateway/edge.py and gateway/receiver.py rely on in aiohttp beyond its public API. If
aiohttp changes any of it, these fail by name, before the behaviour tests fail in stranger ways."""

from __future__ import annotations

import inspect

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway import receiver
from gateway.edge import ALIASED_INTERNALS, EdgeLimits, EdgeProtocol, EdgeRunner, EdgeServer


def test_aiohttp_is_a_version_the_edge_was_written_for() -> None:
    major, minor = (int(x) for x in aiohttp.__version__.split(".")[:2])
    assert (major, minor) >= (3, 14) and major == 3


def test_request_handler_still_has_the_hooks_the_edge_overrides() -> None:
    for name in ("handle_error", "data_received", "connection_made", "connection_lost",
                 "finish_response"):
        assert callable(getattr(RequestHandler, name, None)), name
    params = list(inspect.signature(RequestHandler.handle_error).parameters)
    assert params == ["self", "request", "status", "exc", "message"]
    params = list(inspect.signature(RequestHandler.finish_response).parameters)
    assert params == ["self", "request", "resp", "start_time"]


def test_private_attributes_the_edge_reads_are_there() -> None:
    assert set(ALIASED_INTERNALS) == {"web.Server", "RequestHandler"}
    assert {"_messages", "_force_close"} <= set(RequestHandler.__slots__)
    assert "_loop" in inspect.getsource(RequestHandler.__mro__[1].__init__)


async def test_edge_server_makes_edge_protocols_with_aiohttps_settings() -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    base = web.Server(handler, keepalive_timeout=2.0, max_field_size=1234)
    edge = EdgeServer(base, EdgeLimits(1.0, 2.0, 10))
    protocol = edge()
    assert isinstance(protocol, EdgeProtocol)
    assert protocol.keepalive_timeout == 2.0
    assert protocol.max_field_size == 1234
    assert edge.request_factory == base.request_factory


def test_edge_runner_builds_its_server_through_the_app_runner_hook() -> None:
    assert "_make_server" in vars(web.AppRunner)
    assert EdgeRunner._make_server is not web.AppRunner._make_server


def _slots(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}


def test_private_attributes_the_receiver_reads_are_there() -> None:
    assert set(receiver.ALIASED_INTERNALS) == {"web.Server", "RequestHandler"}
    names = set(receiver.ALIASED_INTERNALS["RequestHandler"])
    assert names - {"_loop"} <= _slots(RequestHandler)
    assert "_kwargs" in inspect.getsource(web.Server.__init__)


async def test_receiver_makes_the_parser_aiohttp_makes_for_a_connection() -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    base = web.Server(handler, max_line_size=1234)
    protocol = EdgeServer(base, EdgeLimits(1.0, 2.0, 10))()
    parser = receiver._fresh_parser(protocol)
    assert type(parser) is type(protocol._parser)
    messages, _, _ = parser.feed_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [m.path for m, _ in messages] == ["/"]
