"""What an identity change sets off besides its rows: deleting a project, a group or a user
wakes the object deletion worker at once (rather than at its next poll), and the objects of
their packages leave the bucket."""

from __future__ import annotations

import dataclasses

from gateway import keys
from tests.conftest import World
from tests.package_helpers import bucket_keys, eventually, generic_url, hdr


async def _upload(client, world: World, project_id: int | None = None) -> None:
    resp = await client.put(generic_url(project_id or world.project_id), data=b"data",
                            headers=hdr(world.admin_token))
    assert resp.status == 201, await resp.text()


def _never_polls(client) -> list[int]:
    """The worker stops polling; the returned list records the service's wake-ups (passed on
    to the worker), so the objects can only go because the delete woke it."""
    app = client.server.app
    worker = app[keys.deletions]
    worker.idle_interval = 3600
    woken: list[int] = []

    def wake() -> None:
        woken.append(1)
        worker.wake()

    app[keys.services] = dataclasses.replace(app[keys.services], wake_deletions=wake)
    return woken


async def test_deleting_a_project_wakes_the_deletion_worker(client, world: World, s3,
                                                            settings) -> None:
    await _upload(client, world)
    woken = _never_polls(client)
    resp = await client.delete(f"/api/v4/projects/{world.project_id}",
                               headers=hdr(world.admin_token))
    assert (resp.status, woken) == (202, [1])
    await eventually(lambda: not bucket_keys(s3, settings.s3_bucket), "objects gone", 20)


async def test_deleting_a_group_wakes_the_deletion_worker(client, world: World, s3,
                                                          settings) -> None:
    await _upload(client, world)
    woken = _never_polls(client)
    resp = await client.delete("/api/v4/groups/acme", headers=hdr(world.admin_token))
    assert (resp.status, woken) == (202, [1])
    await eventually(lambda: not bucket_keys(s3, settings.s3_bucket), "objects gone", 20)


async def test_deleting_a_user_wakes_the_deletion_worker(client, world: World, s3,
                                                         settings) -> None:
    token = world.tokens["developer"]
    created = await client.post("/api/v4/projects", json={"name": "mine"}, headers=hdr(token))
    pid = (await created.json())["id"]
    await _upload(client, world, pid)
    woken = _never_polls(client)
    resp = await client.delete("/api/v4/users/4?hard_delete=true",
                               headers=hdr(world.admin_token))
    assert (resp.status, woken) == (204, [1])
    await eventually(lambda: not bucket_keys(s3, settings.s3_bucket), "objects gone", 20)
