"""What a hostile caller can do to /metrics and to the request ids: no unbounded labels from
paths or methods, no token or path in the exposition, no chosen request ids."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config import Settings
from tests.conftest import World


def series(text: str, name: str) -> list[dict[str, str]]:
    return [s.labels for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name]


async def test_a_flood_of_distinct_paths_adds_no_series(client, world: World) -> None:
    token = world.tokens["developer"]
    for i in range(200):
        junk = uuid.uuid4().hex
        await client.get(f"/{junk}/{i}", headers={"PRIVATE-TOKEN": token})
        await client.get(f"/api/v4/projects/{i}/packages/generic/{junk}/1/{junk}.bin",
                         headers={"PRIVATE-TOKEN": token})
        await client.get(f"/api/v4/users/{junk}?private_token={token}")
    text = await (await client.get("/metrics")).text()
    labels = series(text, "packgate_http_requests_total")
    assert len(labels) <= 6  # a handful of (method, route template, status)
    assert {ls["route"] for ls in labels} <= {
        "unmatched", "/api/v4/projects/{id}/packages/generic/{tail}",
        "/api/v4/users/{user_id}", "/metrics"}
    assert token not in text


async def test_unusual_methods_share_one_label(client) -> None:
    for method in ("PROPFIND", "MKCOL", "LOCK", "UNLOCK", "REPORT", "SEARCH"):
        await client.request(method, "/-/health")
    text = await (await client.get("/metrics")).text()
    methods = {ls["method"] for ls in series(text, "packgate_http_requests_total")}
    assert methods <= {"GET", "other"}


async def test_a_wrong_metrics_token_learns_nothing(aiohttp_client, settings: Settings) -> None:
    secret = "metrics-" + uuid.uuid4().hex
    client = await aiohttp_client(create_app(settings.with_overrides(metrics_token=secret)))
    for guess in (secret[:-1], secret + "x", secret.upper(), "", "Bearer", secret[:16]):
        resp = await client.get("/metrics", headers={"Authorization": f"Bearer {guess}"})
        assert resp.status == 401
        assert await resp.json() == {"message": "401 Unauthorized"}
    # The token is not a way in elsewhere either.
    resp = await client.get("/api/v4/user", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status == 401


async def test_a_forged_request_id_never_reaches_the_answer(client) -> None:
    for forged in ("admin-session", "x" * 5000, '"},{"level":"error', "../../etc/passwd"):
        resp = await client.get("/-/health", headers={"X-Request-Id": forged})
        assert resp.headers["X-Request-Id"] != forged
