"""``GET /metrics``: Prometheus's text format, for this process or, with several workers, for
the whole instance (gateway/metrics.py)."""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway import metrics as m


async def scrape(request: web.Request) -> web.Response:
    app = request.app
    m.check_token(request, app[keys.settings].metrics_token)
    body = await m.exposition_for(app[keys.metrics], app.get(keys.worker_peers))
    return m.text_response(body)
