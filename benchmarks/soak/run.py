"""One soak run: start the cluster, make the projects, run clients and faults for the profile's
duration, let the cluster settle, read its state, check the invariants, write the report."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import boto3
import psutil
from botocore.config import Config as BotoConfig

from benchmarks.soak.bodies import BodyMaker
from benchmarks.soak.checker import Checker, Result, State
from benchmarks.soak.faults import Scheduler, plan
from benchmarks.soak.history import History
from benchmarks.soak.profiles import Profile
from benchmarks.soak.workload import Workload
from gateway.config import MiB, Settings
from gateway.devtools.cluster import Cluster
from gateway.devtools.dev import BUCKET
from gateway.devtools.processes import free_port
from gateway.uploads import part_size_for

# Shortened for the soak (the README's defaults are 900 s and 30 s): the sweeper and the
# shutdown finish within a short run. Everything else is the gateway's default, except a
# smaller buffer budget, which makes the memory bound tighter.
STALE_SECONDS = 10
SETTINGS = Settings(stale_upload_seconds=STALE_SECONDS, part_size=5 * MiB,
                    buffer_budget=64 * MiB, shutdown_timeout=5, token_cache_seconds=1,
                    metrics_token="soak-" + uuid.uuid4().hex)
# One gateway streams downloads itself, the others redirect to S3: nginx's balancing decides
# which a download meets, and the history records which it was.
INSTANCE_SETTINGS = {"gateway-3": {"download_mode": "proxy"}}
# README, "Performance": idle size (~70-80 MiB) + budget + one part + ~1.25 MiB per connection
# sending a body.
IDLE_RSS = 80 * MiB
PER_CONNECTION = 1.25 * MiB


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Outcome:
    history: History
    results: list[Result]
    rss_bound: int
    settled_after: float
    seed: int
    profile: Profile

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def rss_bound(profile: Profile, settings: Settings) -> int:
    biggest = max(high for _, _, high in profile.sizes)
    part = max(part_size_for(1, biggest, settings.part_size),
               part_size_for(1, None, settings.part_size))
    return int(IDLE_RSS + settings.buffer_budget + part + PER_CONNECTION * profile.clients)


class RssSampler:
    def __init__(self, cluster: Cluster, history: History, interval: float = 0.5) -> None:
        self._cluster, self._history, self._interval = cluster, history, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for instance in self._cluster.instances:
                pid = instance.pid
                if pid is None:
                    continue
                with contextlib.suppress(psutil.Error):
                    self._history.add_rss(instance.name, psutil.Process(pid).memory_info().rss)


async def make_projects(cluster: Cluster) -> dict[str, int]:
    """``allow``: the demo project (duplicates allowed, the default); ``forbid``: a project in
    a group whose policy refuses duplicates, made through the API as a user would."""
    assert cluster.seeded is not None
    auth = {"PRIVATE-TOKEN": cluster.seeded.token}
    api = cluster.url + "/api/v4"
    async with aiohttp.ClientSession(headers=auth) as http:
        path = "soak-forbid-" + uuid.uuid4().hex[:6]
        async with http.post(f"{api}/groups", json={"name": path, "path": path}) as r:
            assert r.status == 201, await r.text()
            group = (await r.json())["id"]
        async with http.post(f"{api}/projects", json={"name": "packages", "path": "packages",
                                                       "namespace_id": group}) as r:
            assert r.status == 201, await r.text()
            project = (await r.json())["id"]
        async with http.put(f"{api}/groups/{group}/packages/settings",
                            json={"generic_duplicates_allowed": False}) as r:
            assert r.status == 200, await r.text()
    return {"allow": cluster.seeded.project_id, "forbid": project}


def s3_client(cluster: Cluster):
    access, secret = cluster.data_dir.s3_credentials()
    assert cluster.s3 is not None
    return boto3.client(
        "s3", endpoint_url=cluster.s3.endpoint_url, region_name="us-east-1",
        aws_access_key_id=access, aws_secret_access_key=secret,
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}))


def bucket_state(s3) -> tuple[set[str], list[dict]]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    try:
        uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    except s3.exceptions.NoSuchUpload:
        uploads = []  # rclone's answer while no multipart upload was ever started
    return keys, uploads


def object_sha256(s3, key: str) -> str:
    h = hashlib.sha256()
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


_ROWS = """
SELECT pf.id, pf.project_id, pf.file_name, pf.file_sha256, pf.object_key, pf.size,
       p.name, p.version
  FROM package_files pf JOIN packages p ON p.id = pf.package_id
"""


async def read_db(url: str) -> tuple[list[dict], list[dict], list[dict]]:
    conn = await asyncpg.connect(url)
    try:
        rows = [dict(r) for r in await conn.fetch(_ROWS)]
        pending = [dict(r) for r in await conn.fetch("SELECT * FROM pending_uploads")]
        deletions = [dict(r) for r in await conn.fetch("SELECT * FROM object_deletions")]
    finally:
        await conn.close()
    return rows, pending, deletions


async def settle(cluster: Cluster, s3, within: float) -> float:
    """Wait until nothing is pending, queued or open and the bucket matches the rows (or
    ``within`` seconds have passed); returns the seconds it took."""
    started = time.monotonic()
    while True:
        rows, pending, deletions = await read_db(cluster.database_url)
        keys, uploads = await asyncio.to_thread(bucket_state, s3)
        if (not pending and not deletions and not uploads
                and keys == {r["object_key"] for r in rows}):
            break
        if time.monotonic() - started > within:
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - started


async def read_state(cluster: Cluster, s3, checker: Checker, projects: dict[str, int],
                     settled_after: float) -> State:
    rows, pending, deletions = await read_db(cluster.database_url)
    keys, uploads = await asyncio.to_thread(bucket_state, s3)
    shas = {}
    for key in sorted(keys):
        shas[key] = await asyncio.to_thread(object_sha256, s3, key)
    statuses = {}
    assert cluster.seeded is not None
    async with aiohttp.ClientSession(headers={"PRIVATE-TOKEN": cluster.seeded.token}) as http:
        for t in sorted(checker.deleted_targets())[:300]:
            url = (f"{cluster.url}/api/v4/projects/{projects[t[0]]}/packages/generic/"
                   f"{t[1]}/{t[2]}/{t[3]}")
            async with http.get(url, allow_redirects=False) as r:
                statuses[t] = r.status
    return State(rows, pending, deletions, keys, uploads, shas, statuses, settled_after)


async def _drive(cluster: Cluster, profile: Profile, seed: int, history: History,
                 projects: dict[str, int], bodies: BodyMaker) -> None:
    assert cluster.seeded is not None
    workload = Workload(cluster.url, cluster.seeded.token, projects, profile, seed, history,
                        bodies)
    faults = plan(profile, seed, [i.name for i in cluster.instances])
    scheduler = Scheduler(cluster, history, faults)
    log(f"{len(faults)} faults planned over {profile.duration:g}s, {profile.clients} clients")
    clients = asyncio.create_task(workload.run())
    scheduler.start()
    try:
        done, _ = await asyncio.wait({clients}, timeout=profile.duration)
        if done:
            clients.result()  # a client that crashed is a bug of the soak: show it
        workload.stopping.set()
        log("duration reached: letting operations in flight finish")
        await asyncio.wait_for(clients, 600)
    finally:
        workload.stopping.set()
        await asyncio.to_thread(scheduler.stop)


def run(profile: Profile, seed: int, work: Path, *, port: int | None = None) -> Outcome:
    cluster = Cluster(work / "data", port or free_port(), SETTINGS, fast=True, s3_proxy=True,
                      instance_settings=INSTANCE_SETTINGS)
    log(f"starting the cluster in {work} (nginx on {cluster.port}) ...")
    cluster.start()
    try:
        return asyncio.run(_run(cluster, profile, seed))
    finally:
        log("stopping the cluster")
        cluster.stop()


async def _run(cluster: Cluster, profile: Profile, seed: int) -> Outcome:
    projects = await make_projects(cluster)
    bodies = BodyMaker(seed)
    history = History()
    sampler = RssSampler(cluster, history)
    sampler.start()
    try:
        await _drive(cluster, profile, seed, history, projects, bodies)
        assert cluster.rotation is not None
        await asyncio.to_thread(cluster.rotation.wait_until, lambda out: not out, 60)
        s3 = s3_client(cluster)
        window = STALE_SECONDS * 6 + 60
        log(f"settling (at most {window}s: the stale window and the deletion queue)")
        settled_after = await settle(cluster, s3, window)
    finally:
        sampler.stop()
    bound = rss_bound(profile, SETTINGS)
    checker = Checker(history, bodies, projects, bound)
    log(f"settled after {settled_after:.1f}s; checking")
    state = await read_state(cluster, s3, checker, projects, settled_after)
    return Outcome(history, checker.run(state), bound, settled_after, seed, profile)
