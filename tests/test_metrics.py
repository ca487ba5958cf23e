"""``GET /metrics``: what an operator's Prometheus scrapes, with bounded labels and no secrets,
for one process or all the workers of ``gateway serve --workers N``."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config import MiB, Settings
from gateway.metrics import merge_expositions
from tests.conftest import World, start_gateway
from tests.faults.checks import wait_for
from tests.faults.proxy import FaultyS3Proxy

GENERIC_ROUTE = "/api/v4/projects/{id}/packages/generic/{tail}"
ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


async def scrape(client, **headers: str) -> str:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return await resp.text()


def url(world: World, name: str = "f.bin", version: str = "1.0") -> str:
    return f"/api/v4/projects/{world.project_id}/packages/generic/pkg/{version}/{name}"


def dev(world: World) -> dict[str, str]:
    return {"PRIVATE-TOKEN": world.tokens["developer"]}


# --- requests -----------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template_never_by_path_or_token(
    client, world: World
) -> None:
    token = world.tokens["developer"]
    resp = await client.put(f"{url(world, 'secret-name.txt')}?private_token={token}", data=b"x")
    assert resp.status == 201
    text = await scrape(client)
    assert value(text, "packgate_http_requests_total", method="PUT", route=GENERIC_ROUTE,
                 status="201") == 1
    assert "secret-name" not in text
    assert token not in text
    assert str(world.project_id) not in {lbl for (_, labels) in samples(text) for _, lbl in labels}


async def test_unmatched_paths_and_odd_methods_share_one_label_each(client) -> None:
    for path in ("/nothing/here", "/another/missing/path"):
        assert (await client.get(path)).status == 404
    assert (await client.request("PROPFIND", "/-/health")).status == 405
    text = await scrape(client)
    assert value(text, "packgate_http_requests_total", method="GET", route="unmatched",
                 status="404") == 2
    assert value(text, "packgate_http_requests_total", method="other", route="unmatched",
                 status="405") == 1


async def test_errors_are_counted_with_the_status_the_client_got(client, world: World) -> None:
    assert (await client.put(url(world), data=b"x")).status == 401
    text = await scrape(client)
    assert value(text, "packgate_http_requests_total", method="PUT", route=GENERIC_ROUTE,
                 status="401") == 1


# --- uploads, downloads and the pipeline --------------------------------------------------------


async def test_an_upload_is_counted_in_bytes_size_and_duration(client, world: World) -> None:
    body = os.urandom(9 * MiB)  # two parts
    assert (await client.put(url(world), data=body, headers=dev(world))).status == 201
    text = await scrape(client)
    assert value(text, "packgate_upload_bytes_total") == len(body)
    assert value(text, "packgate_upload_size_bytes_count") == 1
    assert value(text, "packgate_upload_size_bytes_sum") == len(body)
    assert value(text, "packgate_upload_duration_seconds_count") == 1
    # Nothing is in progress any more.
    assert value(text, "packgate_upload_parts_in_flight") == 0
    assert value(text, "packgate_pending_uploads") == 0
    assert value(text, "packgate_buffer_in_use_bytes") == 0


async def test_buffer_budget_and_database_pool_are_reported(client, settings: Settings) -> None:
    text = await scrape(client)
    assert value(text, "packgate_buffer_budget_bytes") == settings.buffer_budget
    assert value(text, "packgate_buffer_waits_total") == 0
    assert value(text, "packgate_db_pool_max") == settings.db_pool_max
    assert value(text, "packgate_db_pool_in_use") is not None


async def test_uploads_that_wait_for_buffer_room_are_counted(
    aiohttp_client, settings: Settings, world: World
) -> None:
    # Room for one upload's buffers only: a second upload at the same time has to wait.
    tight = settings.with_overrides(part_size=5 * MiB, parts_in_flight=1,
                                    buffer_budget=10 * MiB)
    client = await aiohttp_client(create_app(tight))
    bodies = [os.urandom(16 * MiB) for _ in range(3)]
    answers = await asyncio.gather(*(
        client.put(url(world, f"f{i}.bin"), data=b, headers=dev(world))
        for i, b in enumerate(bodies)))
    assert [a.status for a in answers] == [201] * 3
    text = await scrape(client)
    assert value(text, "packgate_buffer_waits_total") > 0


async def test_redirected_downloads_count_the_file_size(client, world: World) -> None:
    await client.put(url(world), data=b"12345", headers=dev(world))
    resp = await client.get(url(world), headers=dev(world), allow_redirects=False)
    assert resp.status == 302
    text = await scrape(client)
    assert value(text, "packgate_download_bytes_total", mode="redirect") == 5


async def test_proxied_downloads_count_every_byte_sent(
    aiohttp_client, settings: Settings, world: World
) -> None:
    # More than one batch of the counter and a remainder, and a range of a few bytes.
    body = os.urandom(40 * MiB + 3)
    client = await aiohttp_client(create_app(settings.with_overrides(download_mode="proxy")))
    assert (await client.put(url(world), data=body, headers=dev(world))).status == 201
    resp = await client.get(url(world), headers=dev(world))
    assert await resp.read() == body
    resp = await client.get(url(world), headers={**dev(world), "Range": "bytes=10-19"})
    assert resp.status == 206
    assert await resp.read() == body[10:20]
    text = await scrape(client)
    assert value(text, "packgate_download_bytes_total", mode="proxy") == len(body) + 10


async def test_s3_errors_are_counted_by_operation(
    aiohttp_client, settings: Settings, world: World, s3_endpoint: str
) -> None:
    async with FaultyS3Proxy(s3_endpoint, fail_every=1) as proxy:
        failing = settings.with_overrides(s3_endpoint_url=proxy.endpoint_url, s3_max_attempts=2,
                                          part_size=5 * MiB)
        client = await aiohttp_client(create_app(failing))
        resp = await client.put(url(world), data=os.urandom(6 * MiB), headers=dev(world))
        assert resp.status == 503
        text = await scrape(client)
    assert value(text, "packgate_s3_errors_total", operation="upload_part") == 1


async def test_deletion_queue_actions_are_counted(client, world: World) -> None:
    await client.put(url(world), data=b"bytes", headers=dev(world))
    maintainer = {"PRIVATE-TOKEN": world.tokens["maintainer"]}
    assert (await client.delete(url(world), headers=maintainer)).status == 204

    async def deleted() -> bool:
        text = await scrape(client)
        return value(text, "packgate_deletion_queue_actions_total", result="deleted") == 1

    await wait_for(deleted, "the object deleted from the bucket")


async def test_sweeper_rounds_and_aborted_uploads_are_counted(
    aiohttp_client, settings: Settings, world: World, s3
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(stale_upload_seconds=1)))
    key = "packages/ab/abandoned"
    upload_id = s3.create_multipart_upload(Bucket=settings.s3_bucket, Key=key)["UploadId"]
    await world.conn.execute(
        "INSERT INTO pending_uploads (object_key, upload_id, instance, heartbeat_at) "
        "VALUES ($1, $2, 'gone', now() - interval '1 hour')", key, upload_id,
    )

    async def swept() -> bool:
        text = await scrape(client)
        return value(text, "packgate_sweeper_uploads_total", result="aborted") == 1

    await wait_for(swept, "the stale upload aborted by the sweeper")
    text = await scrape(client)
    assert value(text, "packgate_sweeper_runs_total", result="done") >= 1


# --- who may scrape -----------------------------------------------------------------------------


async def test_metrics_token_is_required_when_set(aiohttp_client, settings: Settings) -> None:
    secret = "s3cret-metrics-token-0123"
    client = await aiohttp_client(create_app(settings.with_overrides(metrics_token=secret)))
    for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"},
                    {"Authorization": secret}, {"PRIVATE-TOKEN": secret}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401
        assert await resp.json() == {"message": "401 Unauthorized"}
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    text = await scrape(client, Authorization=f"Bearer {secret}")
    assert secret not in text


async def test_metrics_can_be_switched_off(aiohttp_client, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(metrics=False)))
    assert (await client.get("/metrics")).status == 404


# --- several workers ----------------------------------------------------------------------------


def test_merging_sums_counters_and_histograms_and_keeps_the_worst_lag() -> None:
    a = ('# HELP packgate_http_requests_total x\n# TYPE packgate_http_requests_total counter\n'
         'packgate_http_requests_total{route="/r",status="200"} 3.0\n'
         '# HELP packgate_upload_size_bytes x\n# TYPE packgate_upload_size_bytes histogram\n'
         'packgate_upload_size_bytes_bucket{le="1024.0"} 1.0\n'
         'packgate_upload_size_bytes_bucket{le="+Inf"} 2.0\n'
         'packgate_upload_size_bytes_count 2.0\npackgate_upload_size_bytes_sum 5000.0\n'
         '# HELP packgate_event_loop_lag_seconds x\n# TYPE packgate_event_loop_lag_seconds gauge\n'
         'packgate_event_loop_lag_seconds 0.5\n')
    b = a.replace("} 3.0", "} 4.0").replace("lag_seconds 0.5", "lag_seconds 0.25")
    merged = merge_expositions([a, b], missing=1).decode()
    assert value(merged, "packgate_http_requests_total", route="/r", status="200") == 7
    assert value(merged, "packgate_upload_size_bytes_bucket", le="+Inf") == 4
    assert value(merged, "packgate_upload_size_bytes_sum") == 10000
    assert value(merged, "packgate_event_loop_lag_seconds") == 0.5
    assert value(merged, "packgate_workers") == 2
    assert value(merged, "packgate_workers_missing") == 1


def _get(full_url: str) -> str:
    with urllib.request.urlopen(full_url, timeout=30) as resp:
        return resp.read().decode()


def _put(full_url: str, token: str, body: bytes) -> int:
    req = urllib.request.Request(full_url, data=body, method="PUT",
                                 headers={"PRIVATE-TOKEN": token})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status


def test_every_scrape_of_two_workers_counts_the_whole_instance(
    settings: Settings, world: World, tmp_path: Path
) -> None:
    gw = start_gateway(settings, tmp_path, GATEWAY_WORKERS="2")
    try:
        n = 12
        for i in range(n):
            # A new connection each: the kernel spreads them over both workers.
            assert _put(gw.url + url(world, f"f{i}.bin"), world.tokens["developer"],
                        b"x" * (i + 1)) == 201
        for _ in range(6):  # whichever worker answers the scrape
            text = _get(gw.url + "/metrics")
            assert value(text, "packgate_workers") == 2
            assert value(text, "packgate_workers_missing") == 0
            assert value(text, "packgate_http_requests_total", method="PUT",
                         route=GENERIC_ROUTE, status="201") == n
            assert value(text, "packgate_upload_bytes_total") == sum(range(1, n + 1))
            assert value(text, "packgate_buffer_budget_bytes") == 2 * settings.buffer_budget
    finally:
        gw.stop()
    lines = [json.loads(ln) for ln in gw.log().splitlines() if ln.startswith("{")]
    assert not [ln for ln in lines if ln["level"] in ("error", "warning")], lines


@pytest.mark.parametrize("setting", ["GATEWAY_METRICS=false"])
def test_metrics_switched_off_by_its_setting_answer_404(
    settings: Settings, world: World, tmp_path: Path, setting: str
) -> None:
    name, _, val = setting.partition("=")
    gw = start_gateway(settings, tmp_path, **{name: val})
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(gw.url + "/metrics")
        assert err.value.code == 404
    finally:
        gw.stop()


async def test_event_loop_lag_is_reported(client) -> None:
    text = await scrape(client)
    assert value(text, "packgate_event_loop_lag_seconds") >= 0
    assert value(text, "packgate_event_loop_max_lag_seconds") >= 0
    assert value(text, "packgate_event_loop_stalls_total") == 0
