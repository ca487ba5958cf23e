"""Liveness and readiness for load balancers (not part of GitLab's API)."""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.errors import json_response


async def live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Ready when PostgreSQL (migrated) and S3 answer; otherwise a JSON 503 naming what is not,
    so the balancer skips us (gateway/readiness.py: cached briefly)."""
    await request.app[keys.readiness].check()
    return json_response({"status": "ok"})
