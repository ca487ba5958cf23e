"""Liveness and readiness for load balancers (not part of GitLab's API)."""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.errors import json_response
from gateway.loopwatch import health_body


async def live(request: web.Request) -> web.Response:
    """The process and its event loop run. (While the loop is stalled this cannot answer at
    all; the listener on ``GATEWAY_HEALTH_PORT`` answers 503 then, from a thread.)"""
    status, body = health_body(request.app[keys.loop_watch].state())
    return json_response(body, status)


async def ready(request: web.Request) -> web.Response:
    """Ready when PostgreSQL (migrated) and S3 answer; otherwise a JSON 503 naming what is not,
    so the balancer skips us (gateway/readiness.py: cached briefly)."""
    await request.app[keys.readiness].check()
    return json_response({"status": "ok"})
