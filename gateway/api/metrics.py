"""``GET /metrics``: Prometheus's text format, for this process or, with several workers, for
the whole instance (gateway/metrics.py)."""

from __future__ import annotations

import contextlib

from aiohttp import web

from gateway import keys
from gateway import metrics as m
from gateway.errors import ServiceUnavailable
from gateway.governance import quotas


async def scrape(request: web.Request) -> web.Response:
    app = request.app
    m.check_token(request, app[keys.settings].metrics_token)
    # Storage usage comes from the database; a scrape refreshes it (at most every 30 s).
    with contextlib.suppress(ServiceUnavailable):
        await quotas.refresh_stats(app[keys.db], app[keys.quota_stats])
    body = await m.exposition_for(app[keys.metrics], app.get(keys.worker_peers))
    return m.text_response(body)
