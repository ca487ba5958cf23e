"""What an operator watches through the load balancer: metrics and request ids."""

from __future__ import annotations

import re

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.devtools.cluster import Cluster
from tests.cluster.conftest import METRICS_TOKEN, Api, unique
from tests.faults.checks import wait_for

_PUT_ROUTE = "/api/v4/projects/{id}/packages/generic/{tail}"


async def scrape(http: aiohttp.ClientSession, cluster: Cluster) -> dict[tuple, float]:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with http.get(cluster.url + "/metrics", headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


async def test_metrics_are_scraped_through_nginx_and_count_uploads(
    cluster: Cluster, api: Api, http: aiohttp.ClientSession
) -> None:
    name = unique("metrics")
    for n in range(6):
        async with http.put(api.file(name, "1.0.0", f"f{n}.txt"), data=b"x" * n,
                            headers=api.auth) as resp:
            assert resp.status == 201
    created = 0.0
    for _ in range(6):  # nginx spreads scrapes too: each answers for its own gateway
        samples = await scrape(http, cluster)
        created = max(created, sum(
            value for (metric, labels), value in samples.items()
            if metric == "packgate_http_requests_total"
            and dict(labels) == {"method": "PUT", "route": _PUT_ROUTE, "status": "201"}
        ))
    assert created >= 1


async def test_metrics_without_the_token_are_refused_through_nginx(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    async with http.get(cluster.url + "/metrics") as resp:
        assert resp.status == 401
        assert (await resp.json())["message"].startswith("401 Unauthorized")


async def test_request_id_from_nginx_is_answered_and_on_the_gateways_log_line(
    cluster: Cluster, api: Api, http: aiohttp.ClientSession
) -> None:
    forged = "forged-by-client"
    async with http.get(api.url(f"/projects/{api.project_id}/packages"), headers={
        **api.auth, "X-Request-Id": forged,
    }) as resp:
        assert resp.status == 200
        request_id = resp.headers["X-Request-Id"]
    # nginx's own id (32 hex digits) replaces what the client sent, and the gateway kept it.
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)

    def logs() -> str:
        return "".join(instance.log_path.read_text() for instance in cluster.instances)

    async def logged() -> bool:
        return f'"request_id":"{request_id}"' in logs()

    # The access log line is written once the answer has gone: wait for it.
    await wait_for(logged, "the gateway's log line with nginx's request id", 15)
    assert forged not in logs()
